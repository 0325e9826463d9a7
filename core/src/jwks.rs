//! JWK sets fetched for token verification (`jwks_public_endpoint`), cached by (endpoint,
//! `kid`).
//!
//! The edge resolves a token to an endpoint and a `kid` (`spindle_hub::jwt::JwksEndpoint`,
//! which allows only configured endpoints) and asks here for that one key. A key found at one
//! endpoint answers only requests for that endpoint, so two issuers using the same `kid` never
//! verify each other's tokens.
//!
//! Bounds, so that a flood of tokens cannot turn into a flood of requests or memory:
//! - fetches of one endpoint are serialised, and everyone who asked while a fetch ran takes
//!   its outcome (success or failure) instead of fetching again;
//! - an unknown `kid` refetches the set (key rotation) but at most once per
//!   [`JwksLimits::min_refetch_interval`] per endpoint: later askers wait for that slot;
//! - each fetch has a timeout and a body size limit; at most [`JwksLimits::max_endpoints`]
//!   endpoints are remembered (the least recently fetched is forgotten first);
//! - a set is kept for [`JwksLimits::ttl`] (1 h, as Centrifugo); when a refetch fails, the
//!   previous set still answers for the keys it has.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::ACCEPT;
use hyper::{Method, Request, StatusCode};
use spindle_hub::config::Tls;
use spindle_hub::jwt::Jwks;
use thiserror::Error;

use crate::https::HttpsClient;
use crate::tls::ClientTlsError;

/// The bounds of the cache (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct JwksLimits {
    /// How long a fetched set is used. Default 1 h.
    pub ttl: Duration,
    /// Timeout of one fetch (connect + answer + body). Default 5 s.
    pub fetch_timeout: Duration,
    /// Largest JWK set document accepted. Default 256 KiB.
    pub max_document_bytes: usize,
    /// Shortest time between two fetches of one endpoint. Default 1 s.
    pub min_refetch_interval: Duration,
    /// Endpoints remembered at once. Default 1,024.
    pub max_endpoints: usize,
}

impl Default for JwksLimits {
    fn default() -> Self {
        JwksLimits {
            ttl: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(5),
            max_document_bytes: 256 * 1024,
            min_refetch_interval: Duration::from_secs(1),
            max_endpoints: 1024,
        }
    }
}

/// Why no key could be given for a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwksError {
    /// The endpoint could not be fetched (network, status, timeout, size, not a JWK set).
    #[error("fetching the JWK set failed: {0}")]
    Fetch(String),
}

/// The usable keys of one fetched set, as JSON objects by `kid`.
#[derive(Debug, Default)]
struct KeyTexts {
    by_kid: HashMap<String, String>,
}

#[derive(Debug)]
struct Fetched {
    keys: Arc<KeyTexts>,
    at: Instant,
}

#[derive(Debug)]
struct Attempt {
    started: Instant,
    finished: Instant,
    outcome: Result<(), JwksError>,
}

#[derive(Debug, Default)]
struct EndpointState {
    fetched: Option<Fetched>,
    last_attempt: Option<Attempt>,
}

/// One endpoint: what is known (read without waiting), and the gate that lets one fetch run at
/// a time. A lookup of a cached key never waits for a fetch in flight.
#[derive(Debug, Default)]
struct Endpoint {
    state: Mutex<EndpointState>,
    fetching: tokio::sync::Mutex<()>,
}

impl Endpoint {
    fn state(&self) -> std::sync::MutexGuard<'_, EndpointState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The JWK sets this core has fetched.
#[derive(Debug)]
pub struct JwksCache {
    client: HttpsClient,
    limits: JwksLimits,
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
}

impl JwksCache {
    /// A cache fetching with the system's root certificates.
    pub fn new(limits: JwksLimits) -> Result<JwksCache, ClientTlsError> {
        Ok(JwksCache {
            client: HttpsClient::new(&Tls::default())?,
            limits,
            endpoints: Mutex::new(HashMap::new()),
        })
    }

    /// The JWK (a JSON object) with `kid` at `endpoint`; `None` when the set, fetched no
    /// earlier than this call, has no such usable key.
    pub async fn key(&self, endpoint: &str, kid: &str) -> Result<Option<String>, JwksError> {
        let asked = Instant::now();
        let entry = self.endpoint(endpoint);
        if let Some(key) = self.fresh(&entry.state(), kid) {
            return Ok(Some(key));
        }
        let _gate = entry.fetching.lock().await;
        let wait_until = {
            let state = entry.state();
            if let Some(key) = self.fresh(&state, kid) {
                return Ok(Some(key));
            }
            // Someone fetched while this call waited: that answer is as fresh as ours would be.
            if let Some(attempt) = &state.last_attempt
                && attempt.finished >= asked
            {
                return match &attempt.outcome {
                    Ok(()) => Ok(lookup(&state, kid)),
                    Err(error) => stale_or(&state, kid, error.clone()),
                };
            }
            state
                .last_attempt
                .as_ref()
                .map(|attempt| attempt.started + self.limits.min_refetch_interval)
        };
        if let Some(next) = wait_until {
            tokio::time::sleep_until(next.into()).await;
        }
        let started = Instant::now();
        let outcome = self.fetch(endpoint).await;
        let finished = Instant::now();
        let mut state = entry.state();
        match outcome {
            Ok(keys) => {
                tracing::info!(endpoint, keys = keys.by_kid.len(), "JWK set fetched");
                state.fetched = Some(Fetched {
                    keys: Arc::new(keys),
                    at: finished,
                });
                state.last_attempt = Some(Attempt {
                    started,
                    finished,
                    outcome: Ok(()),
                });
                Ok(lookup(&state, kid))
            }
            Err(error) => {
                tracing::warn!(endpoint, %error, "JWK set fetch failed");
                state.last_attempt = Some(Attempt {
                    started,
                    finished,
                    outcome: Err(error.clone()),
                });
                stale_or(&state, kid, error)
            }
        }
    }

    /// `kid` from a set fetched less than the TTL ago.
    fn fresh(&self, state: &EndpointState, kid: &str) -> Option<String> {
        let fetched = state.fetched.as_ref()?;
        (fetched.at.elapsed() < self.limits.ttl)
            .then(|| fetched.keys.by_kid.get(kid).cloned())
            .flatten()
    }

    /// The entry of `endpoint`, made if new; forgets the least recently fetched endpoint when
    /// the map is full.
    fn endpoint(&self, endpoint: &str) -> Arc<Endpoint> {
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = endpoints.get(endpoint) {
            return Arc::clone(entry);
        }
        if endpoints.len() >= self.limits.max_endpoints {
            let oldest = endpoints
                .iter()
                .min_by_key(|(_, entry)| entry.state().last_attempt.as_ref().map(|a| a.finished))
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                endpoints.remove(&oldest);
            }
        }
        let entry = Arc::new(Endpoint::default());
        endpoints.insert(endpoint.to_owned(), Arc::clone(&entry));
        entry
    }

    async fn fetch(&self, endpoint: &str) -> Result<KeyTexts, JwksError> {
        let fetch = async {
            let request = Request::builder()
                .method(Method::GET)
                .uri(endpoint)
                .header(ACCEPT, "application/json")
                .body(Full::new(Bytes::new()))
                .map_err(|error| JwksError::Fetch(format!("bad endpoint: {error}")))?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| JwksError::Fetch(error.to_string()))?;
            if response.status() != StatusCode::OK {
                return Err(JwksError::Fetch(format!("HTTP {}", response.status())));
            }
            let body = Limited::new(response.into_body(), self.limits.max_document_bytes)
                .collect()
                .await
                .map_err(|error| JwksError::Fetch(format!("reading the body: {error}")))?;
            Ok(body.to_bytes())
        };
        let body = tokio::time::timeout(self.limits.fetch_timeout, fetch)
            .await
            .map_err(|_| {
                JwksError::Fetch(format!("no answer within {:?}", self.limits.fetch_timeout))
            })??;
        key_texts(&body)
    }
}

fn lookup(state: &EndpointState, kid: &str) -> Option<String> {
    state
        .fetched
        .as_ref()
        .and_then(|fetched| fetched.keys.by_kid.get(kid).cloned())
}

/// After a failed fetch: a key of the previous set if it has it, else the error.
fn stale_or(
    state: &EndpointState,
    kid: &str,
    error: JwksError,
) -> Result<Option<String>, JwksError> {
    match lookup(state, kid) {
        Some(key) => Ok(Some(key)),
        None => Err(error),
    }
}

/// The usable keys of a JWK set document, each kept as its own JSON object text so the edge
/// receives one key, not the set.
fn key_texts(body: &[u8]) -> Result<KeyTexts, JwksError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| JwksError::Fetch("the JWK set is not UTF-8".to_owned()))?;
    Jwks::from_json(text).map_err(|error| JwksError::Fetch(error.to_string()))?;
    let document: serde_json::Value =
        serde_json::from_str(text).map_err(|error| JwksError::Fetch(error.to_string()))?;
    let mut by_kid = HashMap::new();
    for key in document["keys"].as_array().into_iter().flatten() {
        let Some(kid) = key["kid"].as_str() else {
            continue;
        };
        // The first usable entry of a kid wins, as in `Jwks`.
        if !by_kid.contains_key(kid) {
            let single = Jwks::from_json(&format!(r#"{{"keys":[{key}]}}"#));
            if single.is_ok_and(|s| !s.is_empty()) {
                by_kid.insert(kid.to_owned(), key.to_string());
            }
        }
    }
    Ok(KeyTexts { by_kid })
}

#[cfg(test)]
mod tests;
