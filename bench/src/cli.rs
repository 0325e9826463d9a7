//! Command-line arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};
use spindle_proto::Format;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "spindle-bench",
    version,
    about = "Load generator for spindle: fan-out throughput/latency, idle memory per connection, \
             publishing with history, reconnect storms with recovery, map synchronization"
)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Tokio worker threads of the load generator (default: number of cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N subscribers on one channel, publications at a fixed rate through POST /api/publish.
    Fanout(FanoutArgs),
    /// N clients that connect and subscribe, then idle: memory per connection.
    Idle(IdleArgs),
    /// Publishes into channels with history, round-robin, through /api/publish or /api/batch,
    /// as fast as the server answers; every reply and the history are checked.
    HistoryPublish(HistoryPublishArgs),
    /// N clients with recovery drop their connections at once, miss publications, reconnect
    /// at once and recover.
    ReconnectStorm(ReconnectStormArgs),
    /// A map of K keys, then fresh clients synchronizing it (state pages, stream, live) one
    /// after the other: time from the first subscribe to the LIVE reply.
    MapSync(MapSyncArgs),
    /// The fan-out matrix side by side: Spindle, uWebSockets.js and nats-server (and the slim
    /// edge fed by a core), each started pinned to --server-cpus, this generator pinned to
    /// --bench-cpus, at each rate; JSON lines and a PNG plot in --out.
    Compare(CompareArgs),
    /// C clients each track the same K shared-poll keys; the benchmark is the backend answering
    /// shared_poll_refresh: calls and keys per refresh interval.
    SharedPoll(SharedPollArgs),
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Servers, in the order they run at each rate: spindle, spindle-edge, uws, nats.
    #[arg(long, value_delimiter = ',', default_value = "spindle,uws,nats")]
    pub servers: Vec<String>,
    /// Publish rates (per second).
    #[arg(long, value_delimiter = ',', default_value = "100,250,1000")]
    pub rates: Vec<f64>,
    /// Subscribers on the one channel.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Payload bytes.
    #[arg(short = 's', long, default_value_t = 64)]
    pub size: usize,
    /// Seconds of publishing per run.
    #[arg(short = 'd', long, default_value_t = 15.0)]
    pub duration: f64,
    /// Seconds to wait for late deliveries after the last publish.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Publishing connections (one request in flight on each).
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// CPUs this generator runs on (`taskset -c` list); the servers get --server-cpus
    /// (default 0).
    #[arg(long, default_value = "1")]
    pub bench_cpus: String,
    /// A run whose generator used more than this % of one core is marked invalid.
    #[arg(long, default_value_t = 85.0)]
    pub generator_limit: f64,
    /// Directory for compare.jsonl (appended) and compare.png.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SharedPollArgs {
    /// Clients, each tracking every key.
    #[arg(short = 'c', long, default_value_t = 1_000)]
    pub clients: usize,
    /// Keys (the same for every client).
    #[arg(short = 'k', long, default_value_t = 100)]
    pub keys: usize,
    /// `shared_poll.refresh_interval` in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub interval_ms: u64,
    /// Intervals measured once every client holds every key.
    #[arg(long, default_value_t = 10)]
    pub intervals: usize,
}

#[derive(Debug, Args)]
pub struct MapSyncArgs {
    /// Keys in the map.
    #[arg(short = 'k', long, default_value_t = 10_000)]
    pub keys: usize,
    /// State page size the clients ask for (the SDK's `pageSize`).
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
    /// Bytes of JSON per value.
    #[arg(short = 's', long, default_value_t = 64)]
    pub value_size: usize,
    /// Synchronizations, each on a fresh connection.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
}

/// Which server to measure: by default one we start (`spindle serve -c <temp cfg> -p 0`);
/// with `--url`, one already running.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// WebSocket URL of a running server (ws://host:port/connection/websocket). Without it the
    /// benchmark starts its own server.
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// API URL of a running server (default: derived from --url, http://host:port/api).
    #[arg(long, global = true)]
    pub api_url: Option<String>,
    /// http_api.key of the server.
    #[arg(
        long,
        global = true,
        env = "SPINDLE_BENCH_API_KEY",
        default_value = "spindle-bench-api-key"
    )]
    pub api_key: String,
    /// client.token.hmac_secret_key of the server (tokens are signed with it).
    #[arg(
        long,
        global = true,
        env = "SPINDLE_BENCH_HMAC_SECRET",
        default_value = "spindle-bench-hmac-secret-0123456789abcdef0123456789"
    )]
    pub hmac_secret: String,
    /// Pid of an attached server, for its CPU and RSS figures (known when we start it).
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Server binary to start (default: <CARGO_TARGET_DIR or target>/release/spindle).
    #[arg(long, global = true)]
    pub server_bin: Option<PathBuf>,
    /// Start a split deployment instead of `spindle serve`: a `spindle core` (the API) and this
    /// many `spindle edge`s joined by QUIC, the clients dealt round-robin over the edges.
    #[arg(long, global = true, default_value_t = 0)]
    pub split: usize,
    /// With --split: run the edges as the slim `spindle-edge` binary (next to the server binary).
    #[arg(long, global = true)]
    pub slim_edges: bool,
    /// CPUs for the started server processes (a `taskset -c` list, e.g. `0`); run the
    /// generator itself under `taskset -c 1` to keep the two apart.
    #[arg(long, global = true)]
    pub server_cpus: Option<String>,
    /// log.level of a started server.
    #[arg(long, global = true, default_value = "error")]
    pub server_log_level: String,
    /// JSON object merged into a started server's config, e.g.
    /// '{"websocket":{"read_buffer_size":4096}}' (default: none, every other key at its default).
    #[arg(long, global = true)]
    pub server_config: Option<String>,
    /// Client protocol encoding.
    #[arg(long, global = true, value_enum, default_value_t = FormatArg::Json)]
    pub format: FormatArg,
    /// Connections in setup (handshake + connect + subscribe) at the same time.
    #[arg(long, global = true, default_value_t = 256)]
    pub connect_concurrency: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Json,
    Protobuf,
}

impl From<FormatArg> for Format {
    fn from(format: FormatArg) -> Format {
        match format {
            FormatArg::Json => Format::Json,
            FormatArg::Protobuf => Format::Protobuf,
        }
    }
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Subscriber connections.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Channels; subscribers and publications are dealt round-robin over them.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Publications per second (all channels together).
    #[arg(short = 'r', long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds of publishing.
    #[arg(short = 'd', long, default_value_t = 20.0)]
    pub duration: f64,
    /// Payload size in bytes (JSON with a send timestamp and a sequence number, padded).
    #[arg(short = 's', long, default_value_t = 128)]
    pub size: usize,
    /// API connections publishing in parallel (one request in flight on each).
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Seconds to wait for late deliveries after the last publish.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
}

#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Client connections.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    pub clients: usize,
    /// Channels the clients subscribe to (round-robin).
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Seconds to stay idle before measuring (30 s covers one server ping round).
    #[arg(short = 'w', long, default_value_t = 30.0)]
    pub wait: f64,
}

/// History options of the channels a started server gets (`channel.without_namespace`).
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// history_size of the channels.
    #[arg(long, default_value_t = 100)]
    pub history_size: u32,
    /// history_ttl of the channels (a Go duration).
    #[arg(long, default_value = "300s")]
    pub history_ttl: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PublishModeArg {
    /// One publication per POST /api/publish.
    Single,
    /// --batch-size publish commands per POST /api/batch.
    Batch,
}

#[derive(Debug, Args)]
pub struct HistoryPublishArgs {
    /// Channels; publications are dealt round-robin over them.
    #[arg(long, default_value_t = 1000)]
    pub channels: usize,
    #[arg(long, value_enum, default_value_t = PublishModeArg::Batch)]
    pub mode: PublishModeArg,
    /// Publish commands per batch request (--mode batch).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Ask the server to run a batch's commands concurrently ("parallel": true).
    #[arg(long)]
    pub parallel: bool,
    /// API connections, one request in flight on each.
    #[arg(short = 'c', long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds of publishing.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Payload size in bytes.
    #[arg(short = 's', long, default_value_t = 128)]
    pub size: usize,
    /// Channels whose history is read in full at the end (every channel's top is checked).
    #[arg(long, default_value_t = 10)]
    pub verify_channels: usize,
    #[command(flatten)]
    pub history: HistoryArgs,
}

#[derive(Debug, Args)]
pub struct ReconnectStormArgs {
    /// Client connections.
    #[arg(short = 'n', long, default_value_t = 5000)]
    pub clients: usize,
    /// Channels; client k subscribes to channel k % channels (0: one channel per client).
    #[arg(long, default_value_t = 500)]
    pub channels: usize,
    /// Publications to each channel while the clients are away.
    #[arg(long, default_value_t = 20)]
    pub missed: u64,
    /// Connections reconnecting at the same time (0: all at once).
    #[arg(long, default_value_t = 0)]
    pub reconnect_concurrency: usize,
    /// Publish commands per batch request while the clients are away.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Seconds to keep the clients after the last recovery, to catch late or duplicate
    /// publications.
    #[arg(long, default_value_t = 2.0)]
    pub linger: f64,
    #[command(flatten)]
    pub history: HistoryArgs,
}
