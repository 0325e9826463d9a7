//! Shared poll: what a backend answering `shared_poll_refresh` sees when C clients each track
//! the same K keys (docs/shared-poll.md). The benchmark is that backend: a minimal HTTP/1.1
//! server counting calls and keys, whose values change on every poll (so every poll is also a
//! fan-out of K changes to C clients). The claim measured: backend load follows unique keys,
//! not clients — keys polled per interval ≈ K whatever C.

use crate::client::{Subscriber, token};
use crate::report::Table;
use crate::server::Endpoints;
use anyhow::{Context, Result, bail, ensure};
use spindle_hub::shared_poll::signature::sign;
use spindle_proto::Format;
use spindle_proto::client::{Command, KeyedItem, SubRefreshRequest, SubscribeRequest, TrackBatch};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// The HMAC key of track signatures in the started server.
const TRACK_SECRET: &str = "spindle-bench-shared-poll";
const USER: &str = "bench-poll";

#[derive(Debug, Clone)]
pub struct SharedPollOptions {
    pub clients: usize,
    pub keys: usize,
    pub interval: Duration,
    pub intervals: usize,
    pub format: Format,
    pub connect_concurrency: usize,
    pub machine_busy_before: f64,
}

/// What the backend has seen.
#[derive(Debug, Default)]
struct Seen {
    calls: AtomicU64,
    keys: AtomicU64,
    /// Polls of each key so far: the key's value (`rev`) changes with every one.
    revs: std::sync::Mutex<HashMap<String, u64>>,
}

/// The application backend: `POST /refresh` answers every key with a new value.
#[derive(Debug)]
pub struct Backend {
    url: String,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub async fn start() -> Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/refresh", listener.local_addr()?);
        let seen = Arc::new(Seen::default());
        let shared = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let seen = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = serve(socket, &seen).await;
                });
            }
        });
        Ok(Backend { url, seen, task })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// One kept-alive HTTP/1.1 connection of the core's proxy client.
async fn serve(socket: tokio::net::TcpStream, seen: &Seen) -> Result<()> {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            read.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        read.read_exact(&mut body).await?;
        let answer = refresh(&body, seen)?;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        write.write_all(head.as_bytes()).await?;
        write.write_all(&answer).await?;
    }
}

fn refresh(body: &[u8], seen: &Seen) -> Result<Vec<u8>> {
    let request: serde_json::Value = serde_json::from_slice(body)?;
    let items = request["items"].as_array().cloned().unwrap_or_default();
    seen.calls.fetch_add(1, Ordering::Relaxed);
    seen.keys.fetch_add(items.len() as u64, Ordering::Relaxed);
    let mut revs = seen
        .revs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let answers: Vec<serde_json::Value> = items
        .iter()
        .filter_map(|item| item["key"].as_str())
        .map(|key| {
            let rev = revs.entry(key.to_owned()).or_default();
            *rev += 1;
            serde_json::json!({"key": key, "data": {"key": key, "rev": *rev}})
        })
        .collect();
    Ok(serde_json::to_vec(
        &serde_json::json!({"result": {"items": answers}}),
    )?)
}

/// The namespace and proxy a started server needs.
pub fn server_patch(backend_url: &str, interval: Duration) -> serde_json::Value {
    serde_json::json!({
        "shared_poll": {"hmac_secret_key": TRACK_SECRET},
        "channel": {
            "proxy": {"shared_poll_refresh": {"endpoint": backend_url, "timeout": "5s"}},
            "namespaces": [{
                "name": "bench_poll", "allow_subscribe_for_client": true,
                "subscription_type": "shared_poll",
                "shared_poll": {"refresh_interval": format!("{}ms", interval.as_millis()),
                                "max_keys_per_connection": 100000}
            }]
        }
    })
}

pub async fn run(
    endpoints: &Endpoints,
    backend: &Backend,
    options: &SharedPollOptions,
) -> Result<Table> {
    ensure!(
        options.clients > 0 && options.keys > 0 && options.intervals > 0,
        "shared-poll needs clients, keys and intervals"
    );
    let channel = "bench_poll:prices";
    let keys: Vec<String> = (0..options.keys).map(|i| format!("k{i:05}")).collect();
    let token = token(USER, &endpoints.hmac_secret)?;
    let received = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(
        options.connect_concurrency.max(1),
    ));
    for i in 0..options.clients {
        let url = endpoints.ws_url(i).to_owned();
        let (token, keys, received, ready, gate) = (
            token.clone(),
            keys.clone(),
            Arc::clone(&received),
            Arc::clone(&ready),
            Arc::clone(&gate),
        );
        let format = options.format;
        clients.spawn(async move {
            let permit = gate.acquire_owned().await?;
            let mut client = Subscriber::connect(&url, format, &token).await?;
            track(&mut client, channel, &keys).await?;
            drop(permit);
            count_updates(client, keys.len() as u64, &received, &ready).await
        });
    }
    // Warm: every client had a change of every key.
    let everyone = options.clients as u64;
    let warm_deadline = Instant::now() + Duration::from_secs(120);
    while ready.load(Ordering::Relaxed) < everyone {
        if Instant::now() > warm_deadline {
            bail!(
                "only {} of {everyone} clients had every key in 120 s",
                ready.load(Ordering::Relaxed)
            );
        }
        if let Some(Ok(Err(error))) = clients.try_join_next() {
            return Err(error.context("a client failed"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let warm = started.elapsed();

    let calls_before = backend.seen.calls.load(Ordering::Relaxed);
    let keys_before = backend.seen.keys.load(Ordering::Relaxed);
    let received_before = received.load(Ordering::Relaxed);
    let window = options.interval * u32::try_from(options.intervals).unwrap_or(u32::MAX);
    tokio::time::sleep(window).await;
    let calls = backend.seen.calls.load(Ordering::Relaxed) - calls_before;
    let polled = backend.seen.keys.load(Ordering::Relaxed) - keys_before;
    let updates = received.load(Ordering::Relaxed) - received_before;
    clients.abort_all();

    let per_interval = |n: u64| n as f64 / options.intervals as f64;
    let mut table = Table::new("shared-poll: backend load for C clients tracking the same K keys");
    table
        .section("setup")
        .row("clients", options.clients)
        .row("keys per client (all the same)", options.keys)
        .row("unique keys", options.keys)
        .row(
            "refresh interval",
            format!("{} ms", options.interval.as_millis()),
        )
        .row("intervals measured", options.intervals)
        .row(
            "machine CPU busy before",
            format!("{:.1} %", options.machine_busy_before),
        );
    table
        .section("backend")
        .row(
            "refresh calls per interval",
            format!("{:.1}", per_interval(calls)),
        )
        .row(
            "keys polled per interval",
            format!("{:.1}", per_interval(polled)),
        )
        .row(
            "keys polled per unique key per interval",
            format!("{:.2}", per_interval(polled) / options.keys as f64),
        )
        .row(
            "keys polled per client-key per interval",
            format!(
                "{:.4}",
                per_interval(polled) / (options.keys * options.clients) as f64
            ),
        );
    table
        .section("clients")
        .row(
            "time until every client held every key",
            format!("{:.2} s", warm.as_secs_f64()),
        )
        .row(
            "updates received per interval (every key changes on every poll)",
            format!("{:.0}", per_interval(updates)),
        )
        .row("expected (clients x keys)", options.clients * options.keys);
    Ok(table)
}

/// Subscribes (type 4) and tracks `keys` in one signed batch.
async fn track(client: &mut Subscriber, channel: &str, keys: &[String]) -> Result<()> {
    client
        .subscribe(SubscribeRequest {
            channel: channel.to_owned(),
            r#type: 4,
            ..Default::default()
        })
        .await
        .context("subscribe")?;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let batch = TrackBatch {
        signature: sign(TRACK_SECRET, channel, USER, &refs, now, 0),
        items: keys
            .iter()
            .map(|key| KeyedItem {
                key: key.clone(),
                version: 0,
            })
            .collect(),
    };
    let reply = client
        .request(Command {
            sub_refresh: Some(SubRefreshRequest {
                channel: channel.to_owned(),
                r#type: 1,
                track: vec![batch],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .context("track")?;
    ensure!(reply.sub_refresh.is_some(), "no track result");
    Ok(())
}

/// Counts key updates (publications) until the task is aborted; the client counts as ready
/// once it has had `keys` of them (values in the track reply are not counted: a client is
/// ready after a poll changed every key).
async fn count_updates(
    mut client: Subscriber,
    keys: u64,
    received: &AtomicU64,
    ready: &AtomicU64,
) -> Result<()> {
    let count = |replies: &[spindle_proto::client::Reply]| {
        replies
            .iter()
            .filter(|r| r.push.as_ref().is_some_and(|p| p.r#pub.is_some()))
            .count() as u64
    };
    let mut mine = count(&client.take_early());
    received.fetch_add(mine, Ordering::Relaxed);
    let mut counted_ready = false;
    while let Some(replies) = client.next_replies().await? {
        let n = count(&replies);
        mine += n;
        received.fetch_add(n, Ordering::Relaxed);
        if !counted_ready && mine >= keys {
            counted_ready = true;
            ready.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}
