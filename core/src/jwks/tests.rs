//! The cache against a real HTTP server on 127.0.0.1: fetch sharing, the refetch bound, and
//! cached keys answering while a slow refetch runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;

use super::*;

/// RFC 8037's example Ed25519 public key.
const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

fn set(kids: &[&str]) -> String {
    let keys: Vec<String> = kids
        .iter()
        .map(|kid| format!(r#"{{"kty":"OKP","crv":"Ed25519","kid":"{kid}","x":"{ED_X}"}}"#))
        .collect();
    format!(r#"{{"keys":[{}]}}"#, keys.join(","))
}

/// Serves `{k1}`; every request after the first takes `slow`. Returns the URL, the request
/// count and the server task.
async fn provider(slow: Duration) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let app = Router::new().route(
        "/jwks",
        get(move || {
            let seen = Arc::clone(&seen);
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) > 0 {
                    tokio::time::sleep(slow).await;
                }
                set(&["k1"])
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, count, server)
}

fn cache(min_refetch_interval: Duration) -> Arc<JwksCache> {
    with_limits(JwksLimits {
        min_refetch_interval,
        ..JwksLimits::default()
    })
}

fn with_limits(limits: JwksLimits) -> Arc<JwksCache> {
    Arc::new(JwksCache::new(limits).unwrap())
}

#[tokio::test]
async fn cached_keys_answer_while_a_refetch_is_slow() {
    let (url, count, _server) = provider(Duration::from_millis(1500)).await;
    let cache = cache(Duration::ZERO);
    assert!(cache.key(&url, "k1").await.unwrap().is_some());
    let unknown = {
        let (cache, url) = (Arc::clone(&cache), url.clone());
        tokio::spawn(async move { cache.key(&url, "k9").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    assert!(cache.key(&url, "k1").await.unwrap().is_some());
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(unknown.await.unwrap(), Ok(None));
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn waiters_share_one_fetch_and_refetches_are_spaced() {
    let (url, count, _server) = provider(Duration::from_millis(200)).await;
    let cache = cache(Duration::from_millis(500));
    let started = Instant::now();
    let askers: Vec<_> = (0..20)
        .map(|i| {
            let (cache, url) = (Arc::clone(&cache), url.clone());
            let kid = if i % 2 == 0 { "k1" } else { "nope" };
            tokio::spawn(async move { cache.key(&url, kid).await })
        })
        .collect();
    for asker in askers {
        asker.await.unwrap().unwrap();
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "one fetch served all twenty"
    );
    // A new unknown kid refetches, but not before the interval since the last fetch began.
    assert_eq!(cache.key(&url, "other").await, Ok(None));
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_known_key_survives_a_failed_refetch() {
    let (url, _count, server) = provider(Duration::ZERO).await;
    let cache = with_limits(JwksLimits {
        ttl: Duration::ZERO,
        min_refetch_interval: Duration::ZERO,
        ..JwksLimits::default()
    });
    assert!(cache.key(&url, "k1").await.unwrap().is_some());
    server.abort();
    let _ = server.await;
    // Expired at once (TTL 0): the refetch fails, the previous set still answers for k1 ...
    assert!(cache.key(&url, "k1").await.unwrap().is_some());
    // ... but not for a kid it never had.
    assert!(matches!(
        cache.key(&url, "k2").await,
        Err(JwksError::Fetch(_))
    ));
}

#[tokio::test]
async fn a_failed_fetch_is_an_error() {
    let cache = cache(Duration::ZERO);
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let closed = format!("http://127.0.0.1:{port}/jwks");
    assert!(matches!(
        cache.key(&closed, "k1").await,
        Err(JwksError::Fetch(_))
    ));
}

#[test]
fn key_texts_keep_usable_keys_only() {
    let doc = format!(
        r#"{{"keys":[
            {{"kty":"oct","kid":"h","k":"AAAA"}},
            {{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"{ED_X}"}},
            {{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"AAAA"}},
            {{"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}}
        ]}}"#
    );
    let keys = key_texts(doc.as_bytes()).unwrap();
    assert_eq!(keys.by_kid.len(), 1);
    assert!(keys.by_kid["ed"].contains("11qYAYKx"));
    assert!(key_texts(b"not json").is_err());
    assert!(key_texts(br#"{"nokeys":1}"#).is_err());
}
