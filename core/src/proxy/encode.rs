//! Request encoding and answer decoding shared by every proxy kind (docs/protocol.md §8).
//!
//! Requests: `encoding` is `json` — payloads go in `data` as raw JSON — or, with the proxy's
//! `binary_encoding`, `binary` with payloads base64-encoded in `b64data`. `meta` is sent only with
//! `include_connection_meta`. Answers: `b64data` / `b64info` (when set) are decoded into `data` /
//! `info`, so the edge reads one field whatever the backend chose.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use spindle_hub::config::Proxy;
use spindle_proto::proxy;

use super::Refusal;

/// A request to the backend.
pub(crate) trait Question: Serialize + Send + Sync + 'static {
    /// Applies the proxy's encoding options.
    fn prepare(&mut self, proxy: &Proxy);
}

/// A backend answer.
pub(crate) trait Answer: DeserializeOwned + Send {
    /// The answer standing for a failed call.
    fn refused(refusal: Refusal) -> Self;
    /// `b64*` fields into their plain twins; `Err` on bad base64.
    fn decode_base64(&mut self) -> Result<(), ()>;
}

fn encoding(proxy: &Proxy) -> String {
    if proxy.binary_encoding {
        "binary"
    } else {
        "json"
    }
    .to_owned()
}

/// Moves a payload to `b64data` under binary encoding.
fn encode_payload(proxy: &Proxy, data: &mut Bytes, b64data: &mut String) {
    if proxy.binary_encoding && !data.is_empty() {
        *b64data = STANDARD.encode(&data);
        *data = Bytes::new();
    }
}

fn keep_meta(proxy: &Proxy, meta: &mut Bytes) {
    if !proxy.include_connection_meta {
        *meta = Bytes::new();
    }
}

/// `b64` (when set) decoded into `plain`.
fn decode_into(plain: &mut Bytes, b64: &mut String) -> Result<(), ()> {
    if !b64.is_empty() {
        *plain = STANDARD.decode(b64.as_bytes()).map_err(|_| ())?.into();
        b64.clear();
    }
    Ok(())
}

impl Question for proxy::ConnectRequest {
    fn prepare(&mut self, proxy: &Proxy) {
        self.encoding = encoding(proxy);
        encode_payload(proxy, &mut self.data, &mut self.b64data);
    }
}

impl Question for proxy::RefreshRequest {
    fn prepare(&mut self, proxy: &Proxy) {
        self.encoding = encoding(proxy);
        keep_meta(proxy, &mut self.meta);
    }
}

impl Question for proxy::SubscribeRequest {
    fn prepare(&mut self, proxy: &Proxy) {
        self.encoding = encoding(proxy);
        encode_payload(proxy, &mut self.data, &mut self.b64data);
        keep_meta(proxy, &mut self.meta);
    }
}

impl Question for proxy::PublishRequest {
    fn prepare(&mut self, proxy: &Proxy) {
        self.encoding = encoding(proxy);
        encode_payload(proxy, &mut self.data, &mut self.b64data);
        keep_meta(proxy, &mut self.meta);
    }
}

impl Question for proxy::MapPublishRequest {
    fn prepare(&mut self, proxy: &Proxy) {
        self.encoding = encoding(proxy);
        encode_payload(proxy, &mut self.data, &mut self.b64data);
        keep_meta(proxy, &mut self.meta);
    }
}

impl Question for proxy::MapRemoveRequest {
    fn prepare(&mut self, proxy: &Proxy) {
        self.encoding = encoding(proxy);
        keep_meta(proxy, &mut self.meta);
    }
}

impl Question for proxy::SharedPollRefreshRequest {
    fn prepare(&mut self, _proxy: &Proxy) {}
}

impl Question for proxy::SubRefreshRequest {
    fn prepare(&mut self, proxy: &Proxy) {
        self.encoding = encoding(proxy);
        keep_meta(proxy, &mut self.meta);
    }
}

impl Question for proxy::RpcRequest {
    fn prepare(&mut self, proxy: &Proxy) {
        self.encoding = encoding(proxy);
        encode_payload(proxy, &mut self.data, &mut self.b64data);
        keep_meta(proxy, &mut self.meta);
    }
}

/// `refused` for a response type: the refusal in its `error` or `disconnect`.
macro_rules! refused {
    () => {
        fn refused(refusal: Refusal) -> Self {
            match refusal {
                Refusal::Error(error) => Self {
                    error: Some(error),
                    ..Default::default()
                },
                Refusal::Disconnect(disconnect) => Self {
                    disconnect: Some(disconnect),
                    ..Default::default()
                },
            }
        }
    };
}

impl Answer for proxy::ConnectResponse {
    refused!();
    fn decode_base64(&mut self) -> Result<(), ()> {
        if let Some(r) = &mut self.result {
            decode_into(&mut r.info, &mut r.b64info)?;
            decode_into(&mut r.data, &mut r.b64data)?;
            for options in r.subs.values_mut() {
                decode_into(&mut options.info, &mut options.b64info)?;
                decode_into(&mut options.data, &mut options.b64data)?;
            }
        }
        Ok(())
    }
}

impl Answer for proxy::RefreshResponse {
    refused!();
    fn decode_base64(&mut self) -> Result<(), ()> {
        if let Some(r) = &mut self.result {
            decode_into(&mut r.info, &mut r.b64info)?;
        }
        Ok(())
    }
}

impl Answer for proxy::SubscribeResponse {
    refused!();
    fn decode_base64(&mut self) -> Result<(), ()> {
        if let Some(r) = &mut self.result {
            decode_into(&mut r.info, &mut r.b64info)?;
            decode_into(&mut r.data, &mut r.b64data)?;
        }
        Ok(())
    }
}

impl Answer for proxy::PublishResponse {
    refused!();
    fn decode_base64(&mut self) -> Result<(), ()> {
        if let Some(r) = &mut self.result {
            decode_into(&mut r.data, &mut r.b64data)?;
        }
        Ok(())
    }
}

impl Answer for proxy::MapPublishResponse {
    refused!();
    fn decode_base64(&mut self) -> Result<(), ()> {
        if let Some(r) = &mut self.result {
            decode_into(&mut r.data, &mut r.b64data)?;
        }
        Ok(())
    }
}

impl Answer for proxy::MapRemoveResponse {
    refused!();
    fn decode_base64(&mut self) -> Result<(), ()> {
        Ok(())
    }
}

impl Answer for proxy::SharedPollRefreshResponse {
    /// A shared-poll refresh has no client to disconnect: a disconnect is a failed call.
    fn refused(refusal: Refusal) -> Self {
        let error = match refusal {
            Refusal::Error(error) => error,
            Refusal::Disconnect(_) => super::internal_error(),
        };
        Self {
            error: Some(error),
            ..Default::default()
        }
    }
    fn decode_base64(&mut self) -> Result<(), ()> {
        Ok(())
    }
}

impl Answer for proxy::SubRefreshResponse {
    refused!();
    fn decode_base64(&mut self) -> Result<(), ()> {
        if let Some(r) = &mut self.result {
            decode_into(&mut r.info, &mut r.b64info)?;
        }
        Ok(())
    }
}

impl Answer for proxy::RpcResponse {
    refused!();
    fn decode_base64(&mut self) -> Result<(), ()> {
        if let Some(r) = &mut self.result {
            decode_into(&mut r.data, &mut r.b64data)?;
        }
        Ok(())
    }
}
