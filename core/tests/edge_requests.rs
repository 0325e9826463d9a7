//! The core answers one edge's requests concurrently (issue 14 §1.4): a request stuck in the
//! broker holds up no other request of that edge. Proven on the real PostgreSQL broker, where
//! a transaction of the test holds the shard row a publish needs (`SPINDLE_TEST_POSTGRES`,
//! default `postgres://postgres@127.0.0.1:5432/test`; fails, never skips, without it).
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use spindle_core::{Node, NodeIdentity};
use spindle_hub::config::{BrokerType, Secret};
use spindle_mesh::mesh::{self, request};
use std::time::Duration;
use support::{Answers, FakeEdge, config};

fn dsn() -> String {
    std::env::var("SPINDLE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

async fn raw() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&dsn(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("this test needs PostgreSQL at {}: {error}", dsn()));
    tokio::spawn(connection);
    client
}

fn publish(channel: &str) -> Option<request::Kind> {
    Some(request::Kind::Publish(mesh::PublishRequest {
        channel: channel.to_owned(),
        data: Bytes::from_static(b"{}"),
        ..Default::default()
    }))
}

fn history(channel: &str) -> Option<request::Kind> {
    Some(request::Kind::History(mesh::HistoryRequest {
        channel: channel.to_owned(),
        limit: 10,
        ..Default::default()
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_stuck_in_the_broker_does_not_hold_up_the_edges_other_requests() {
    let prefix = format!("spt_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let node = Node::connect(
        config(|c| {
            c.broker.enabled = true;
            c.broker.kind = BrokerType::Postgres;
            c.broker.postgres.dsn = Secret::new(dsn());
            c.broker.postgres.table_prefix = prefix.clone();
            c.broker.postgres.pool_size = 4;
        }),
        NodeIdentity::named("core"),
    )
    .await
    .unwrap_or_else(|error| panic!("this test needs PostgreSQL at {}: {error}", dsn()));
    let edge = std::sync::Arc::new(FakeEdge::attach(&node, "e1", Answers::default()));

    // Two channels in different shards.
    let mut holder = raw().await;
    let shard_of = format!("SELECT {prefix}_shard_of($1)");
    let shard = |row: tokio_postgres::Row| -> i32 { row.get(0) };
    let stuck = "hist:stuck";
    let stuck_shard = shard(holder.query_one(&shard_of, &[&stuck]).await.unwrap());
    let mut free = None;
    for i in 0..64 {
        let candidate = format!("hist:free{i}");
        if shard(holder.query_one(&shard_of, &[&candidate]).await.unwrap()) != stuck_shard {
            free = Some(candidate);
            break;
        }
    }
    let free = free.expect("a channel in another shard");

    // The test holds the stuck channel's shard row: its publish waits for the row.
    let transaction = holder.transaction().await.unwrap();
    transaction
        .execute(
            &format!("SELECT 1 FROM {prefix}_shard WHERE shard = $1 FOR UPDATE"),
            &[&stuck_shard],
        )
        .await
        .unwrap();
    let stuck_publish = {
        let edge = std::sync::Arc::clone(&edge);
        tokio::spawn(async move { edge.request(publish(stuck)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stuck_publish.is_finished(), "the shard row is held");

    // Another request of the same edge is answered meanwhile.
    let answered = tokio::time::timeout(Duration::from_secs(3), edge.request(history(&free)))
        .await
        .expect("a history read answered while the edge's publish is stuck");
    assert_eq!(answered.error, None, "{answered:?}");

    transaction.rollback().await.unwrap();
    let published = tokio::time::timeout(Duration::from_secs(5), stuck_publish)
        .await
        .expect("the publish completes once the row is free")
        .unwrap();
    assert_eq!(published.error, None, "{published:?}");
}
