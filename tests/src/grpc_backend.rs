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
//! `{"key": <key>, "via": "grpc"}` (versionless), keys starting with `gone` removed.

use std::net::SocketAddr;
use std::time::Duration;

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
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(CentrifugoProxyServer::new(Answers))
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(GrpcBackend { addr, task })
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
struct Answers;

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
