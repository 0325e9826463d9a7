//! `uni_grpc` (docs/protocol.md §1.7): the unidirectional transport over gRPC, on its own port.
//! `CentrifugoUniStream/Consume` takes one `ConnectRequest` and answers with a stream of
//! client-protocol `Push` messages: the connect push, then publications and the rest, the empty
//! push as ping, and a disconnect push ending the stream. Like the other uni transports it runs
//! the one connection task in its uni mode (Protobuf); this module only adapts the gRPC call to
//! [`Incoming`] / [`Outgoing`] and splits the writer's batches into single pushes.

use crate::connection::{self, Setup};
use crate::emulation::disconnect_push;
use crate::socket::{Incoming, Outgoing};
use crate::{Shared, Transport};
use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt, future, sink, stream};
use prost::Message;
use spindle_proto::Format;
use spindle_proto::client::{ConnectRequest, Push, Reply};
use spindle_proto::unistream::centrifugo_uni_stream_server::{
    CentrifugoUniStream, CentrifugoUniStreamServer,
};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

/// Pushes that may wait between the connection's writer and the gRPC response.
const PUSH_QUEUE: usize = 64;

/// The default largest request message (`uni_grpc.max_receive_message_size` 0): 4 MiB.
const DEFAULT_MAX_RECEIVE: usize = 4 * 1024 * 1024;

/// The stream of one `Consume` call.
pub type PushStream = Pin<Box<dyn Stream<Item = Result<Push, Status>> + Send>>;

/// The `CentrifugoUniStream` service of one edge.
#[derive(Debug)]
pub(crate) struct UniGrpc {
    edge: Arc<Shared>,
}

/// The tonic service for `edge`, with `uni_grpc.max_receive_message_size` applied.
pub(crate) fn service(edge: Arc<Shared>) -> CentrifugoUniStreamServer<UniGrpc> {
    let limit = match edge.config.uni_grpc.max_receive_message_size {
        0 => DEFAULT_MAX_RECEIVE,
        limit => limit as usize,
    };
    CentrifugoUniStreamServer::new(UniGrpc { edge }).max_decoding_message_size(limit)
}

#[tonic::async_trait]
impl CentrifugoUniStream for UniGrpc {
    type ConsumeStream = PushStream;

    async fn consume(
        &self,
        request: Request<ConnectRequest>,
    ) -> Result<Response<PushStream>, Status> {
        if let Some(reason) = self.edge.refusal() {
            return Err(Status::unavailable(reason));
        }
        let header_user = Some(self.edge.rules.user_id_http_header())
            .filter(|name| !name.is_empty())
            .and_then(|name| request.metadata().get(name.to_ascii_lowercase()))
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .map(str::to_owned);
        // The connection task decodes the request itself, as on every uni transport.
        let frame = Bytes::from(request.into_inner().encode_to_vec());
        Ok(Response::new(spawn(
            Arc::clone(&self.edge),
            frame,
            header_user,
        )))
    }
}

/// Spawns the connection task for one call; returns the response stream it feeds.
fn spawn(edge: Arc<Shared>, frame: Bytes, header_user: Option<String>) -> PushStream {
    let (pushes_tx, pushes) = mpsc::channel::<Push>(PUSH_QUEUE);
    let (gone, gone_rx) = oneshot::channel::<()>();
    let incoming =
        stream::once(future::ready(Incoming::Data(frame))).chain(stream::once(async move {
            // The response stream was dropped: the client cancelled or went away.
            let _ = gone_rx.await;
            Incoming::Close
        }));
    let outgoing = sink::unfold(pushes_tx, |tx, item: Outgoing| async move {
        for push in pushes_of(item) {
            tx.send(push).await.map_err(|_| ())?;
        }
        Ok::<_, ()>(tx)
    });
    let setup = Setup {
        format: Format::Protobuf,
        transport: Transport::UniGrpc,
        native_ping: false,
        header_user,
        session: Some(uuid::Uuid::new_v4().to_string()),
        uni: Some(Arc::new(OnceLock::new())),
        headers: Default::default(),
    };
    tokio::spawn(connection::serve(
        edge,
        setup,
        Box::pin(incoming),
        Box::pin(outgoing),
    ));
    // Ends when the writer ends (after the disconnect push); `gone` drops with the stream.
    Box::pin(stream::unfold(
        (pushes, gone),
        |(mut pushes, gone)| async move {
            let push = pushes.recv().await?;
            Some((Ok(push), (pushes, gone)))
        },
    ))
}

/// The pushes of one outgoing item: a Protobuf batch is length-prefixed Replies, each a push
/// (or, empty, a ping: the empty push); a close becomes the disconnect push.
fn pushes_of(item: Outgoing) -> Vec<Push> {
    let mut batch = match item {
        Outgoing::Frame(batch) => batch,
        Outgoing::Close { code, reason } => match disconnect_push(Format::Protobuf, code, reason) {
            Some(batch) => batch,
            None => return Vec::new(),
        },
        // Never asked for (no native ping on this transport).
        Outgoing::Ping => return Vec::new(),
    };
    let mut pushes = Vec::new();
    while batch.has_remaining() {
        match Reply::decode_length_delimited(&mut batch) {
            Ok(reply) => pushes.push(reply.push.unwrap_or_default()),
            Err(_) => break,
        }
    }
    pushes
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_proto::client::{Disconnect, Publication};

    #[test]
    fn batches_split_into_pushes() {
        let publication = Reply {
            push: Some(Push {
                channel: "a".into(),
                r#pub: Some(Publication {
                    data: Bytes::from_static(b"x"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut batch = publication.encode_length_delimited_to_vec();
        batch.extend(Reply::default().encode_length_delimited_to_vec());
        let pushes = pushes_of(Outgoing::Frame(batch.into()));
        assert_eq!(pushes.len(), 2);
        assert_eq!(Some(&pushes[0]), publication.push.as_ref());
        assert_eq!(pushes[1], Push::default());

        let close = pushes_of(Outgoing::Close {
            code: 3503,
            reason: "force disconnect".into(),
        });
        assert_eq!(
            close,
            vec![Push {
                disconnect: Some(Disconnect {
                    code: 3503,
                    reason: "force disconnect".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }]
        );
        assert!(pushes_of(Outgoing::Ping).is_empty());
    }
}
