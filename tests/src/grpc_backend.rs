//! A test application backend speaking Centrifugo's gRPC proxy service
//! (`centrifugal.centrifugo.proxy.CentrifugoProxy`), run in-process on 127.0.0.1:0 with tonic:
//! what an existing gRPC backend for Centrifugo looks like.
//!
//! Answers: connect → the user named by `data.user` (info echoes the `x-app-key` metadata);
//! subscribe → allowed with data `{"grpc": true}`, or error 103 for channels containing
//! `denied`; publish → data rewritten to `{"via": "grpc"}`; rpc → echo of method and data,
//! method `slow` sleeps past the 1 s default timeout; refresh / sub_refresh → 60 s more;
//! map_publish → key `grpc:<key>`, data `{"via": "grpc"}`, tag `via=grpc`; map_remove → error
//! 103 for the key `locked`, else allowed; shared_poll_refresh → every key's data
//! `{"key": <key>, "via": "grpc"}` (versionless), keys starting with `gone` removed;
//! SubscribeUnidirectional → data `{"stream": "uni", "user": <user>}`, then publications
//! `{"n": 1..}` every 100 ms — three and the end for channels without `endless` in the name,
//! error 103 first for channels containing `denied`; SubscribeBidirectional → data
//! `{"stream": "bidi"}`, then `{"echo": <data>}` for every client publication.
//! [`GrpcBackend::open_streams`] counts the subscription streams not yet closed.

use std::net::SocketAddr;
use std::time::Duration;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::{Stream, StreamExt};
use serde_json::json;
use spindle_proto::proxy;
use spindle_proto::proxy::grpc::centrifugo_proxy_server::{CentrifugoProxy, CentrifugoProxyServer};
use tonic::{Request, Response, Status};

use crate::{Error, Result, fixture};

/// A running gRPC backend; stops when dropped.
#[derive(Debug)]
pub struct GrpcBackend {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    streams: Arc<AtomicUsize>,
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcBackend {
    /// Starts the backend on a free port.
    pub async fn start() -> Result<GrpcBackend> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::new(format!("gRPC backend bind: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::new(format!("gRPC backend address: {e}")))?;
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let streams = Arc::new(AtomicUsize::new(0));
        let answers = Answers {
            streams: Arc::clone(&streams),
        };
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(CentrifugoProxyServer::new(answers))
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(GrpcBackend {
            addr,
            task,
            streams,
        })
    }

    /// Subscription streams opened and not yet closed (by either side).
    pub fn open_streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `127.0.0.1:<port>`, the form of a gRPC proxy endpoint.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }
}

#[derive(Debug)]
struct Answers {
    streams: Arc<AtomicUsize>,
}

/// Counts one open subscription stream while alive.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(counter: &Arc<AtomicUsize>) -> Open {
        counter.fetch_add(1, Ordering::SeqCst);
        Open(Arc::clone(counter))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type Messages =
    Pin<Box<dyn Stream<Item = std::result::Result<proxy::StreamSubscribeResponse, Status>> + Send>>;

fn first(response: proxy::SubscribeResponse) -> proxy::StreamSubscribeResponse {
    proxy::StreamSubscribeResponse {
        subscribe_response: Some(response),
        publication: None,
    }
}

fn publication(data: serde_json::Value) -> proxy::StreamSubscribeResponse {
    proxy::StreamSubscribeResponse {
        subscribe_response: None,
        publication: Some(proxy::Publication {
            data: json_bytes(data),
            tags: Default::default(),
        }),
    }
}

fn json_bytes(value: serde_json::Value) -> bytes::Bytes {
    bytes::Bytes::from(value.to_string())
}

#[tonic::async_trait]
impl CentrifugoProxy for Answers {
    async fn connect(
        &self,
        request: Request<proxy::ConnectRequest>,
    ) -> std::result::Result<Response<proxy::ConnectResponse>, Status> {
        let key = request
            .metadata()
            .get("x-app-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let data: serde_json::Value =
            serde_json::from_slice(&request.get_ref().data).unwrap_or_default();
        Ok(Response::new(proxy::ConnectResponse {
            result: Some(proxy::ConnectResult {
                user: data["user"].as_str().unwrap_or("").to_owned(),
                info: json_bytes(json!({"key": key})),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn refresh(
        &self,
        _request: Request<proxy::RefreshRequest>,
    ) -> std::result::Result<Response<proxy::RefreshResponse>, Status> {
        Ok(Response::new(proxy::RefreshResponse {
            result: Some(proxy::RefreshResult {
                expire_at: fixture::unix_now() + 60,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn subscribe(
        &self,
        request: Request<proxy::SubscribeRequest>,
    ) -> std::result::Result<Response<proxy::SubscribeResponse>, Status> {
        if request.get_ref().channel.contains("denied") {
            return Ok(Response::new(proxy::SubscribeResponse {
                error: Some(proxy::Error {
                    code: 103,
                    message: "permission denied".into(),
                    temporary: false,
                }),
                ..Default::default()
            }));
        }
        Ok(Response::new(proxy::SubscribeResponse {
            result: Some(proxy::SubscribeResult {
                data: json_bytes(json!({"grpc": true, "user": request.get_ref().user})),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    type SubscribeUnidirectionalStream = Messages;
    type SubscribeBidirectionalStream = Messages;

    async fn subscribe_unidirectional(
        &self,
        request: Request<proxy::SubscribeRequest>,
    ) -> std::result::Result<Response<Messages>, Status> {
        let request = request.into_inner();
        let open = Open::new(&self.streams);
        if request.channel.contains("denied") {
            let refused = first(proxy::SubscribeResponse {
                error: Some(proxy::Error {
                    code: 103,
                    message: "permission denied".into(),
                    temporary: false,
                }),
                ..Default::default()
            });
            let stream = futures_util::stream::once(async move {
                drop(open);
                Ok(refused)
            });
            return Ok(Response::new(Box::pin(stream)));
        }
        let endless = request.channel.contains("endless");
        let head = first(proxy::SubscribeResponse {
            result: Some(proxy::SubscribeResult {
                data: json_bytes(json!({"stream": "uni", "user": request.user})),
                ..Default::default()
            }),
            ..Default::default()
        });
        let rest = futures_util::stream::unfold((1u64, open), move |(n, open)| async move {
            if !endless && n > 3 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok(publication(json!({"n": n}))), (n + 1, open)))
        });
        let stream = futures_util::stream::once(async move { Ok(head) }).chain(rest);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn subscribe_bidirectional(
        &self,
        request: Request<tonic::Streaming<proxy::StreamSubscribeRequest>>,
    ) -> std::result::Result<Response<Messages>, Status> {
        let mut incoming = request.into_inner();
        let open = Open::new(&self.streams);
        let opening = incoming
            .message()
            .await?
            .and_then(|m| m.subscribe_request)
            .ok_or_else(|| Status::invalid_argument("no subscribe request first"))?;
        let head = first(proxy::SubscribeResponse {
            result: Some(proxy::SubscribeResult {
                data: json_bytes(json!({"stream": "bidi", "channel": opening.channel})),
                ..Default::default()
            }),
            ..Default::default()
        });
        let echoes =
            futures_util::stream::unfold((incoming, open), |(mut incoming, open)| async move {
                loop {
                    match incoming.message().await {
                        Ok(Some(message)) => {
                            if let Some(p) = message.publication {
                                let data: serde_json::Value =
                                    serde_json::from_slice(&p.data).unwrap_or_default();
                                return Some((
                                    Ok(publication(json!({"echo": data}))),
                                    (incoming, open),
                                ));
                            }
                        }
                        _ => return None,
                    }
                }
            });
        let stream = futures_util::stream::once(async move { Ok(head) }).chain(echoes);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn shared_poll_refresh(
        &self,
        request: Request<proxy::SharedPollRefreshRequest>,
    ) -> std::result::Result<Response<proxy::SharedPollRefreshResponse>, Status> {
        let items = request
            .get_ref()
            .items
            .iter()
            .map(|item| proxy::SharedPollRefreshResultItem {
                key: item.key.clone(),
                data: json_bytes(json!({"key": item.key, "via": "grpc"})),
                removed: item.key.starts_with("gone"),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(proxy::SharedPollRefreshResponse {
            result: Some(proxy::SharedPollRefreshResult {
                items,
                epoch: String::new(),
            }),
            error: None,
        }))
    }

    async fn map_publish(
        &self,
        request: Request<proxy::MapPublishRequest>,
    ) -> std::result::Result<Response<proxy::MapPublishResponse>, Status> {
        Ok(Response::new(proxy::MapPublishResponse {
            result: Some(proxy::MapPublishResult {
                key: format!("grpc:{}", request.get_ref().key),
                data: json_bytes(json!({"via": "grpc"})),
                tags: [("via".to_owned(), "grpc".to_owned())].into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn map_remove(
        &self,
        request: Request<proxy::MapRemoveRequest>,
    ) -> std::result::Result<Response<proxy::MapRemoveResponse>, Status> {
        if request.get_ref().key == "locked" {
            return Ok(Response::new(proxy::MapRemoveResponse {
                error: Some(proxy::Error {
                    code: 103,
                    message: "permission denied".into(),
                    temporary: false,
                }),
                ..Default::default()
            }));
        }
        Ok(Response::new(proxy::MapRemoveResponse {
            result: Some(proxy::MapRemoveResult::default()),
            ..Default::default()
        }))
    }

    async fn publish(
        &self,
        _request: Request<proxy::PublishRequest>,
    ) -> std::result::Result<Response<proxy::PublishResponse>, Status> {
        Ok(Response::new(proxy::PublishResponse {
            result: Some(proxy::PublishResult {
                data: json_bytes(json!({"via": "grpc"})),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn rpc(
        &self,
        request: Request<proxy::RpcRequest>,
    ) -> std::result::Result<Response<proxy::RpcResponse>, Status> {
        let request = request.into_inner();
        if request.method == "slow" {
            tokio::time::sleep(Duration::from_millis(1600)).await;
        }
        let data: serde_json::Value = serde_json::from_slice(&request.data).unwrap_or_default();
        Ok(Response::new(proxy::RpcResponse {
            result: Some(proxy::RpcResult {
                data: json_bytes(json!({"method": request.method, "echo": data})),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn sub_refresh(
        &self,
        _request: Request<proxy::SubRefreshRequest>,
    ) -> std::result::Result<Response<proxy::SubRefreshResponse>, Status> {
        Ok(Response::new(proxy::SubRefreshResponse {
            result: Some(proxy::SubRefreshResult {
                expire_at: fixture::unix_now() + 60,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}
