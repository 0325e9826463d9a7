//! Map synchronization: how long a client takes from its first `subscribe` to the LIVE reply
//! of a map with K keys, driving the phases as centrifuge-js does (docs/maps.md): state pages
//! of `page_size` entries with the cursor, the frozen position repeated, then stream pages
//! until the server answers LIVE. Every run is a fresh connection and checks that it received
//! every key exactly once.

use crate::api_publish::{connect, run_prefix};
use crate::client::{Subscriber, token};
use crate::report::Table;
use crate::server::Endpoints;
use anyhow::{Context, Result, bail, ensure};
use spindle_proto::Format;
use spindle_proto::client::SubscribeRequest;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Keys written per `POST /api/batch` while seeding.
const SEED_BATCH: usize = 500;

#[derive(Debug, Clone)]
pub struct MapSyncOptions {
    pub keys: usize,
    pub page_size: usize,
    pub value_size: usize,
    pub runs: usize,
    pub format: Format,
    pub machine_busy_before: f64,
}

/// The namespace a started server needs: a recoverable map `bench` whose pages may be as large
/// as asked.
pub fn server_patch(page_size: usize) -> serde_json::Value {
    serde_json::json!({"channel": {"namespaces": [{
        "name": "bench", "allow_subscribe_for_client": true, "subscription_type": "map",
        "map": {"mode": "recoverable", "key_ttl": "1h", "stream_size": 1000,
                "min_page_size": 1, "max_page_size": page_size.max(1000)}
    }]}})
}

/// One synchronization: pages read and time to the LIVE reply.
struct Sync {
    pages: usize,
    took: Duration,
}

pub async fn run(endpoints: &Endpoints, options: &MapSyncOptions) -> Result<Table> {
    ensure!(
        options.keys > 0 && options.runs > 0,
        "map-sync needs keys and runs"
    );
    let channel = format!("bench:{}", run_prefix("map"));
    let seeded = Instant::now();
    seed(endpoints, &channel, options).await?;
    let seed_time = seeded.elapsed();

    let token = token("bench-map", &endpoints.hmac_secret)?;
    let mut syncs = Vec::with_capacity(options.runs);
    for run in 0..options.runs {
        let url = endpoints.ws_url(run);
        let mut client = Subscriber::connect(url, options.format, &token).await?;
        let sync = synchronize(&mut client, &channel, options)
            .await
            .with_context(|| format!("run {run}"))?;
        syncs.push(sync);
    }
    let mut times: Vec<Duration> = syncs.iter().map(|s| s.took).collect();
    times.sort_unstable();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let mut table = Table::new("map-sync: first subscribe to the LIVE reply");
    table
        .section("setup")
        .row("keys", options.keys)
        .row("value bytes", options.value_size)
        .row("page size", options.page_size)
        .row(
            "format",
            match options.format {
                Format::Json => "json",
                Format::Protobuf => "protobuf",
            },
        )
        .row("seeding (batch API)", ms(seed_time))
        .row(
            "machine busy before",
            format!("{:.1} %", options.machine_busy_before),
        );
    table
        .section("per synchronization")
        .row("runs", times.len())
        .row("pages", syncs[0].pages)
        .row("min", ms(times[0]))
        .row("median", ms(times[times.len() / 2]))
        .row("max", ms(times[times.len() - 1]));
    Ok(table)
}

/// Writes `keys` entries (`k000000`…) of `value_size` bytes of JSON.
async fn seed(endpoints: &Endpoints, channel: &str, options: &MapSyncOptions) -> Result<()> {
    let mut api = connect(endpoints).await?;
    let pad = "x".repeat(options.value_size.saturating_sub(16));
    let mut body = Vec::new();
    for start in (0..options.keys).step_by(SEED_BATCH) {
        body.clear();
        body.extend_from_slice(br#"{"commands":["#);
        for k in start..(start + SEED_BATCH).min(options.keys) {
            if k > start {
                body.push(b',');
            }
            let command = serde_json::json!({"map_publish": {
                "channel": channel, "key": format!("k{k:06}"), "data": {"k": k, "p": pad}
            }});
            serde_json::to_writer(&mut body, &command)?;
        }
        body.extend_from_slice(b"]}");
        let (status, reply) = api.post_raw("batch", &body).await?;
        ensure!(status == 200, "seeding: HTTP {status}");
        if reply.windows(8).any(|w| w == b"\"error\":") {
            bail!("seeding: {}", String::from_utf8_lossy(reply));
        }
    }
    Ok(())
}

/// Subscribes through the phases until the LIVE reply; checks every key arrived once.
async fn synchronize(
    client: &mut Subscriber,
    channel: &str,
    options: &MapSyncOptions,
) -> Result<Sync> {
    let started = Instant::now();
    let limit = i32::try_from(options.page_size).unwrap_or(i32::MAX);
    let mut seen = HashSet::with_capacity(options.keys);
    let mut cursor = String::new();
    let mut frozen: Option<(u64, String)> = None;
    let mut phase = 2;
    let mut pages = 0;
    loop {
        let (offset, epoch) = frozen.clone().unwrap_or_default();
        let request = SubscribeRequest {
            channel: channel.to_owned(),
            r#type: 1,
            phase,
            limit,
            cursor: cursor.clone(),
            offset,
            epoch,
            flag: 1,
            ..Default::default()
        };
        let result = client.subscribe(request).await?;
        pages += 1;
        for entry in result.state.iter().chain(&result.publications) {
            if !entry.removed && !seen.insert(entry.key.clone()) && phase == 2 {
                bail!("key {} twice in the state", entry.key);
            }
        }
        if result.phase == 0 {
            break;
        }
        if frozen.is_none() && !result.epoch.is_empty() {
            frozen = Some((result.offset, result.epoch.clone()));
        }
        if result.phase == 1 {
            frozen = Some((result.offset, result.epoch.clone()));
        }
        cursor = result.cursor;
        if cursor.is_empty() {
            phase = 1;
        }
    }
    let took = started.elapsed();
    ensure!(
        seen.len() == options.keys,
        "{} of {} keys received",
        seen.len(),
        options.keys
    );
    Ok(Sync { pages, took })
}
