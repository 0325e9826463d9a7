//! An identity provider for JWKS tests: serves JWK sets at `GET /<tenant>/jwks` from
//! 127.0.0.1:0, lets a test change what each tenant serves (key rotation), counts every request
//! it receives (to prove when the server made none), and signs RS256 tokens with the two test
//! keys in `tests/fixtures/jwks/` (`acme` and `globex`; test-only keys, public in this
//! repository).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::{Error, Result};

/// A test signing key: its private PEM and its public JWK (without `kid`).
#[derive(Debug, Clone, Copy)]
pub struct TestKey {
    private_pem: &'static str,
    public_pem: &'static str,
    public_jwk: &'static str,
}

/// The `acme` tenant's key.
pub const ACME: TestKey = TestKey {
    private_pem: include_str!("../fixtures/jwks/acme.pem"),
    public_pem: include_str!("../fixtures/jwks/acme.pub.pem"),
    public_jwk: include_str!("../fixtures/jwks/acme.jwk.json"),
};

/// The `globex` tenant's key.
pub const GLOBEX: TestKey = TestKey {
    private_pem: include_str!("../fixtures/jwks/globex.pem"),
    public_pem: include_str!("../fixtures/jwks/globex.pub.pem"),
    public_jwk: include_str!("../fixtures/jwks/globex.jwk.json"),
};

impl TestKey {
    /// The public JWK with `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        let mut jwk: Value =
            serde_json::from_str(self.public_jwk).unwrap_or_else(|e| panic!("test JWK: {e}"));
        jwk["kid"] = json!(kid);
        jwk
    }

    /// An RS256 token with header `kid` over `claims`.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(self.private_pem.as_bytes())
            .unwrap_or_else(|e| panic!("test key: {e}"));
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &key).unwrap_or_else(|e| panic!("signing: {e}"))
    }

    /// The private key PEM (for tokens a test must make by hand).
    pub fn private_pem(&self) -> &'static str {
        self.private_pem
    }

    /// The public key PEM (SPKI), as an attacker would have it.
    pub fn public_pem(&self) -> &'static str {
        self.public_pem
    }
}

#[derive(Debug, Default)]
struct Served {
    sets: HashMap<String, Value>,
    requests: Vec<String>,
}

/// A running key server; stops when dropped.
#[derive(Debug)]
pub struct KeyServer {
    addr: SocketAddr,
    served: Arc<Mutex<Served>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeyServer {
    /// Starts a key server serving nothing yet (every tenant 404).
    pub async fn start() -> Result<KeyServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::new(format!("key server bind: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::new(format!("key server address: {e}")))?;
        let served = Arc::new(Mutex::new(Served::default()));
        let app = Router::new()
            .route("/{tenant}/jwks", get(jwks))
            .fallback(other)
            .with_state(served.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(KeyServer { addr, served, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `keys` (JWKs) as `tenant`'s set from now on.
    pub fn serve(&self, tenant: &str, keys: Vec<Value>) {
        self.lock()
            .sets
            .insert(tenant.to_owned(), json!({ "keys": keys }));
    }

    /// Every path requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Served> {
        self.served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn jwks(State(served): State<Arc<Mutex<Served>>>, Path(tenant): Path<String>) -> Response {
    let mut served = served
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    served.requests.push(format!("/{tenant}/jwks"));
    match served.sets.get(&tenant) {
        Some(set) => axum::Json(set.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn other(State(served): State<Arc<Mutex<Served>>>, uri: axum::http::Uri) -> StatusCode {
    served
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .requests
        .push(uri.path().to_owned());
    StatusCode::NOT_FOUND
}
