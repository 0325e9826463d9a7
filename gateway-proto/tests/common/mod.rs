//! Fully populated sample messages: every field of every message set to a non-zero value, so a
//! round trip that drops or mangles any field fails.
#![allow(dead_code, clippy::unwrap_used)] // shared by several test binaries; each uses some

use bytes::Bytes;
use spindle_proto::{api, client};
use std::collections::BTreeMap;

pub fn json(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

pub fn info() -> client::ClientInfo {
    client::ClientInfo {
        user: "42".into(),
        client: "c1".into(),
        conn_info: json(r#"{"name":"Alex"}"#),
        chan_info: json(r#"{"role":"admin"}"#),
    }
}

pub fn tags() -> BTreeMap<String, String> {
    BTreeMap::from([("k".to_string(), "v".to_string()), ("a".into(), "b".into())])
}

pub fn publication() -> client::Publication {
    client::Publication {
        data: json(r#"{"text":"hi","n":[1,2,{"x":null}]}"#),
        info: Some(info()),
        offset: u64::MAX - 1,
        tags: tags(),
        delta: true,
        time: 1_700_000_000_123,
        channel: "chat:1".into(),
        key: "k1".into(),
        removed: true,
        score: -77,
        epoch: "AbCdEfGh".into(),
        prev_data: json("[1]"),
        version: 9,
    }
}

pub fn filter() -> client::FilterNode {
    let leaf = client::FilterNode {
        op: String::new(),
        key: "ticker".into(),
        cmp: "in".into(),
        val: "x".into(),
        vals: vec!["BTC".into(), "ETH".into()],
        nodes: vec![],
    };
    client::FilterNode {
        op: "and".into(),
        nodes: vec![leaf.clone(), leaf],
        ..Default::default()
    }
}

pub fn subscribe_request() -> client::SubscribeRequest {
    client::SubscribeRequest {
        channel: "news".into(),
        token: "tok".into(),
        recover: true,
        epoch: "e".into(),
        offset: 1 << 53,
        data: json(r#"{"d":1}"#),
        positioned: true,
        recoverable: true,
        join_leave: true,
        delta: "fossil".into(),
        tf: Some(filter()),
        flag: 3,
        r#type: 1,
        phase: 2,
        cursor: "cur".into(),
        limit: 10,
        asc: true,
    }
}

pub fn subscribe_result() -> client::SubscribeResult {
    client::SubscribeResult {
        expires: true,
        ttl: 30,
        recoverable: true,
        epoch: "e".into(),
        publications: vec![publication(), publication()],
        recovered: true,
        offset: 5,
        positioned: true,
        data: json("\"s\""),
        was_recovering: true,
        delta: true,
        id: -3,
        r#type: 1,
        phase: 2,
        cursor: "next".into(),
        state: vec![publication()],
        publish_debounce: 100,
    }
}

/// A command with every request field set (only valid as a raw message).
pub fn command_with_everything() -> client::Command {
    client::Command {
        id: u32::MAX,
        connect: Some(client::ConnectRequest {
            token: "jwt".into(),
            data: json(r#"{"hello":"world"}"#),
            subs: BTreeMap::from([("news".to_string(), subscribe_request())]),
            name: "js".into(),
            version: "5.5.0".into(),
            headers: tags(),
            flag: 1,
        }),
        subscribe: Some(subscribe_request()),
        unsubscribe: Some(client::UnsubscribeRequest {
            channel: "news".into(),
        }),
        publish: Some(client::PublishRequest {
            channel: "chat".into(),
            data: json(r#"{"text":"hi"}"#),
            r#type: 1,
            key: "k".into(),
            removed: true,
        }),
        presence: Some(client::PresenceRequest {
            channel: "p".into(),
        }),
        presence_stats: Some(client::PresenceStatsRequest {
            channel: "ps".into(),
        }),
        history: Some(client::HistoryRequest {
            channel: "h".into(),
            limit: -1,
            since: Some(client::StreamPosition {
                offset: 7,
                epoch: "e".into(),
            }),
            reverse: true,
        }),
        ping: Some(client::PingRequest {}),
        send: Some(client::SendRequest {
            data: json("[1,2]"),
        }),
        rpc: Some(client::RpcRequest {
            data: json("{}"),
            method: "m".into(),
        }),
        refresh: Some(client::RefreshRequest { token: "t".into() }),
        sub_refresh: Some(client::SubRefreshRequest {
            channel: "c".into(),
            token: "t".into(),
            r#type: 1,
            track: vec![client::TrackBatch {
                signature: "sig".into(),
                items: vec![client::KeyedItem {
                    key: "k".into(),
                    version: 3,
                }],
            }],
            untrack: vec!["u".into()],
        }),
    }
}

/// A reply with every result field and every push field set (only valid as a raw message).
pub fn reply_with_everything() -> client::Reply {
    client::Reply {
        id: 7,
        error: Some(client::Error {
            code: 103,
            message: "permission denied".into(),
            temporary: true,
        }),
        push: Some(client::Push {
            id: 5,
            channel: "news".into(),
            r#pub: Some(publication()),
            join: Some(client::Join { info: Some(info()) }),
            leave: Some(client::Leave { info: Some(info()) }),
            unsubscribe: Some(client::Unsubscribe {
                code: 2000,
                reason: "server unsubscribe".into(),
            }),
            message: Some(client::Message {
                data: json(r#""m""#),
            }),
            subscribe: Some(client::Subscribe {
                recoverable: true,
                epoch: "e".into(),
                offset: 3,
                positioned: true,
                data: json("1"),
            }),
            connect: Some(client::Connect {
                client: "c".into(),
                version: "v".into(),
                data: json("true"),
                subs: vec![("s".to_string(), subscribe_result()).into()],
                expires: true,
                ttl: 1,
                ping: 25,
                pong: true,
                session: "sess".into(),
                node: "n".into(),
                time: 1,
            }),
            disconnect: Some(client::Disconnect {
                code: 3001,
                reason: "shutdown".into(),
                reconnect: true,
            }),
            refresh: Some(client::Refresh {
                expires: true,
                ttl: 9,
            }),
        }),
        connect: Some(client::ConnectResult {
            client: "c".into(),
            version: "0.1.0".into(),
            expires: true,
            ttl: 60,
            data: json(r#"{"x":1}"#),
            subs: vec![
                ("s".to_string(), subscribe_result()).into(),
                ("empty".to_string(), client::SubscribeResult::default()).into(),
            ],
            ping: 25,
            pong: true,
            session: "s".into(),
            node: "n".into(),
            time: 1_700_000_000_000,
        }),
        subscribe: Some(subscribe_result()),
        unsubscribe: Some(client::UnsubscribeResult {}),
        publish: Some(client::PublishResult {}),
        presence: Some(client::PresenceResult {
            presence: vec![("c1".to_string(), info()).into()],
        }),
        presence_stats: Some(client::PresenceStatsResult {
            num_clients: 2,
            num_users: 1,
        }),
        history: Some(client::HistoryResult {
            publications: vec![publication()],
            epoch: "e".into(),
            offset: 12,
        }),
        ping: Some(client::PingResult {}),
        rpc: Some(client::RpcResult {
            data: json(r#"{"r":1}"#),
        }),
        refresh: Some(client::RefreshResult {
            client: "c".into(),
            version: "v".into(),
            expires: true,
            ttl: 4,
        }),
        sub_refresh: Some(client::SubRefreshResult {
            expires: true,
            ttl: 5,
            items: vec![publication()],
        }),
    }
}

pub fn api_publish() -> api::PublishRequest {
    api::PublishRequest {
        channel: "news".into(),
        data: json(r#"{"v":1}"#),
        b64data: "AQID".into(),
        skip_history: true,
        tags: tags(),
        idempotency_key: "idem".into(),
        delta: true,
        version: 2,
        version_epoch: "ve".into(),
    }
}
