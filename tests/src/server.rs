//! A real `spindle serve` process for one test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::http::{self, HttpResponse};
use crate::{Error, Result, fixture};

/// How long the process may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Server::stop`] waits for the process to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The line prefix the binary prints once bound.
pub const LISTENING_PREFIX: &str = "spindle: listening on ";
/// At most this much of stderr / stdout is kept for error messages (the tail).
const LOG_KEEP: usize = 64 * 1024;

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Merged into the fixture config ([`fixture::merge`]); `Value::Null` = no change.
    pub config_patch: Value,
    /// `-p` value; 0 (default) lets the OS choose.
    pub port: u16,
    /// Extra command line arguments after `serve -c <cfg> -p <port>`.
    pub extra_args: Vec<String>,
    /// Start the server with this open-descriptor limit (through `prlimit`), to test how it
    /// behaves when descriptors run short.
    pub descriptor_limit: Option<u64>,
    /// The subcommand: `serve` (default), `core` or `edge`; `spindle-edge` runs the slim edge
    /// binary (which takes no subcommand).
    pub role: &'static str,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            config_patch: Value::Null,
            port: 0,
            extra_args: Vec::new(),
            descriptor_limit: None,
            role: "serve",
        }
    }
}

impl ServerOptions {
    /// These options with `uni_grpc` enabled on a free port ([`Server::uni_grpc_addr`]).
    pub fn with_uni_grpc(mut self) -> Result<Self> {
        let port = free_port()?;
        fixture::merge(
            &mut self.config_patch,
            &serde_json::json!({"uni_grpc": {"enabled": true, "port": port}}),
        );
        Ok(self)
    }

    /// The fixture config with `patch` merged in.
    pub fn patched(patch: Value) -> Self {
        ServerOptions {
            config_patch: patch,
            ..ServerOptions::default()
        }
    }
}

/// A running `spindle serve`. Killed (SIGKILL) on drop unless [`Server::stop`] was awaited.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pid: u32,
    addr: SocketAddr,
    config: Value,
    config_path: PathBuf,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// Panic reports seen on stderr, kept whole whatever the log's tail holds: a server that
    /// panicked in a background task fails the test when it is dropped ([`Drop`]).
    panics: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Server {
    /// Starts a server with the fixture config on a free port.
    pub async fn start() -> Result<Server> {
        Server::start_with(ServerOptions::default()).await
    }

    /// Starts a server with the fixture config patched by `patch` on a free port.
    pub async fn start_patched(patch: Value) -> Result<Server> {
        Server::start_with(ServerOptions::patched(patch)).await
    }

    /// Starts a server.
    pub async fn start_with(options: ServerOptions) -> Result<Server> {
        let slim = options.role == "spindle-edge";
        let bin = if slim {
            fixture::edge_binary_path()
        } else {
            fixture::binary_path()
        };
        let failed = |reason: String| {
            Error::new(format!(
                "could not start spindle ({}): {reason}",
                bin.display()
            ))
        };
        if !bin.is_file() {
            return Err(failed(
                "no such binary; build it with `cargo build -p spindle --bin spindle` \
                 (tests/sdk/run.sh does) or point SPINDLE_BIN at it"
                    .into(),
            ));
        }
        let dir = TempDir::new("spindle-test").map_err(|e| failed(format!("temp dir: {e}")))?;
        let mut config = fixture::config().map_err(|e| failed(e.to_string()))?;
        fixture::merge(&mut config, &options.config_patch);
        let config_path = dir.path().join("config.json");
        let text = serde_json::to_string_pretty(&config).map_err(|e| failed(e.to_string()))?;
        std::fs::write(&config_path, text)
            .map_err(|e| failed(format!("writing {}: {e}", config_path.display())))?;

        // `prlimit` sets the limit on itself and then execs the server: same pid.
        let mut command = match options.descriptor_limit {
            Some(limit) => {
                let mut command = Command::new("prlimit");
                command
                    .arg(format!("--nofile={limit}:{limit}"))
                    .arg("--")
                    .arg(&bin);
                command
            }
            None => Command::new(&bin),
        };
        if !slim {
            command.arg(options.role);
        }
        command
            .arg("-c")
            .arg(&config_path)
            .arg("-p")
            .arg(options.port.to_string())
            .args(&options.extra_args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| failed(format!("spawn failed: {e}")))?;
        let pid = child.id().unwrap_or_default();
        let stdout_log = Arc::new(Mutex::new(String::new()));
        let stderr_log = Arc::new(Mutex::new(String::new()));
        let panics = Arc::new(Mutex::new(Vec::new()));
        let (line_tx, line_rx) = oneshot::channel();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(drain(out, stdout_log.clone(), Some(line_tx), None));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(drain(err, stderr_log.clone(), None, Some(panics.clone())));
        }

        let logs = |reason: &str| {
            failed(format!(
                "{reason}\n--- spindle stderr ---\n{}\n--- spindle stdout ---\n{}",
                tail(&stderr_log),
                tail(&stdout_log)
            ))
        };
        let line = match tokio::time::timeout(START_TIMEOUT, line_rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => {
                // stdout ended without the line: the process exited (or closed stdout).
                let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                let reason = match status {
                    Ok(Ok(status)) => format!(
                        "it exited ({status}) without printing `{LISTENING_PREFIX}<ip>:<port>`"
                    ),
                    _ => {
                        format!("it closed stdout without printing `{LISTENING_PREFIX}<ip>:<port>`")
                    }
                };
                // Let the stderr drain catch up before quoting it.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(logs(&reason));
            }
            Err(_) => {
                let _ = child.start_kill();
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(logs(&format!(
                    "no `{LISTENING_PREFIX}<ip>:<port>` line on stdout within {START_TIMEOUT:?}"
                )));
            }
        };
        let addr = parse_listening(&line).ok_or_else(|| {
            let _ = child.start_kill();
            logs(&format!("cannot parse the listening line {line:?}"))
        })?;
        if options.port != 0 && addr.port() != options.port {
            let _ = child.start_kill();
            return Err(logs(&format!(
                "asked for port {} but it listens on {addr}",
                options.port
            )));
        }
        Ok(Server {
            child: Some(child),
            pid,
            addr,
            config,
            config_path,
            stdout: stdout_log,
            stderr: stderr_log,
            panics,
            _dir: dir,
        })
    }

    /// The address it listens on (an unspecified bind address is replaced by loopback).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The effective configuration (fixture + patch).
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// Path of the config file it was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// `ws://<addr>/connection/websocket`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    /// `http://<addr>`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the process wrote to stderr so far (the last 64 KiB).
    pub fn stderr(&self) -> String {
        tail(&self.stderr)
    }

    /// Where `uni_grpc` listens, when the config enables it (see [`ServerOptions::with_uni_grpc`]).
    pub fn uni_grpc_addr(&self) -> Option<SocketAddr> {
        let uni = self.config.get("uni_grpc")?;
        if uni.get("enabled").and_then(Value::as_bool) != Some(true) {
            return None;
        }
        let port = u16::try_from(uni.get("port").and_then(Value::as_u64).unwrap_or(11000)).ok()?;
        Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    }

    /// What the process wrote to stdout so far (the last 64 KiB).
    pub fn stdout(&self) -> String {
        tail(&self.stdout)
    }

    /// `POST /api/<method>` with the fixture's API key; the parsed body of an HTTP 200 response
    /// (`{"result":…}` or `{"error":…}`). Any other status is an error.
    pub async fn api(&self, method: &str, body: Value) -> Result<Value> {
        let key = fixture::api_key();
        let response = self
            .api_raw(method, &body, &[("X-API-Key", key.as_str())])
            .await?;
        if response.status != 200 {
            return Err(Error::new(format!(
                "API {method} {body}: HTTP {} {:?}\n--- spindle stderr ---\n{}",
                response.status,
                response.text(),
                self.stderr()
            )));
        }
        response.json()
    }

    /// Like [`Server::api`] but requires success and returns the `result` object.
    pub async fn api_ok(&self, method: &str, body: Value) -> Result<Value> {
        let reply = self.api(method, body.clone()).await?;
        if let Some(error) = reply.get("error") {
            return Err(Error::new(format!("API {method} {body} failed: {error}")));
        }
        reply
            .get("result")
            .cloned()
            .ok_or_else(|| Error::new(format!("API {method} {body}: no result in {reply}")))
    }

    /// `POST /api/<method>` with exactly these extra headers (no API key unless given).
    pub async fn api_raw(
        &self,
        method: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Result<HttpResponse> {
        http::post_json(self.addr, &format!("/api/{method}"), headers, body).await
    }

    /// Publishes `data` (JSON) into `channel` through the API; fails on an API error.
    pub async fn publish(&self, channel: &str, data: Value) -> Result<Value> {
        self.api_ok(
            "publish",
            serde_json::json!({ "channel": channel, "data": data }),
        )
        .await
    }

    /// `GET <path>` on the server's port.
    pub async fn get(&self, path: &str) -> Result<HttpResponse> {
        http::get(self.addr, path).await
    }

    /// Kills the process (SIGKILL) and waits for it to be gone.
    pub async fn kill(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Err(Error::new("spindle was already stopped"));
        };
        child
            .kill()
            .await
            .map_err(|e| Error::new(format!("killing spindle: {e}")))
    }

    /// Stops the process where it is (SIGSTOP): it reads, writes and answers nothing until
    /// [`Server::resume`].
    pub async fn pause(&self) -> Result<()> {
        signal(self.pid, "STOP").await
    }

    /// Lets a paused process go on (SIGCONT).
    pub async fn resume(&self) -> Result<()> {
        signal(self.pid, "CONT").await
    }

    /// Sends SIGTERM without waiting.
    pub async fn terminate(&self) -> Result<()> {
        signal(self.pid, "TERM").await
    }

    /// SIGTERM, then waits (up to [`STOP_TIMEOUT`]) for the process to exit; its exit status.
    /// A process that does not exit in time is killed and reported as an error.
    pub async fn stop(mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            return Err(Error::new("spindle was already stopped"));
        };
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::new(format!(
                "spindle had already exited ({status}) before stop\n--- spindle stderr ---\n{}",
                self.stderr()
            )));
        }
        signal(self.pid, "TERM").await?;
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => Err(Error::new(format!("waiting for spindle: {e}"))),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(Error::new(format!(
                    "spindle did not exit within {STOP_TIMEOUT:?} after SIGTERM (killed)\n\
                     --- spindle stderr ---\n{}",
                    self.stderr()
                )))
            }
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        // Whatever the test saw, a panic in the server is a failure (unless the test is
        // already failing: a second panic would abort and hide the first).
        let panics = self.panics.lock().map(|p| p.join("\n")).unwrap_or_default();
        if !panics.is_empty() && !std::thread::panicking() {
            panic!(
                "spindle (pid {}) panicked during the test:\n{panics}\n--- spindle stderr ---\n{}",
                self.pid,
                self.stderr()
            );
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1 (for tests that restart a server on the same
/// port).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::new(format!("binding a probe socket: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::new(format!("probe socket address: {e}")))
}

/// Runs `spindle gentoken -c <config> -u <user> -t <ttl> -q` and returns the token it prints.
pub async fn gentoken(config_path: &Path, user: &str, ttl_seconds: i64) -> Result<String> {
    let bin = fixture::binary_path();
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        Command::new(&bin)
            .arg("gentoken")
            .arg("-c")
            .arg(config_path)
            .arg("-u")
            .arg(user)
            .arg("-t")
            .arg(ttl_seconds.to_string())
            .arg("-q")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| Error::new(format!("{} gentoken did not finish in 20 s", bin.display())))?
    .map_err(|e| Error::new(format!("could not run {} gentoken: {e}", bin.display())))?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || stdout.is_empty() {
        return Err(Error::new(format!(
            "{} gentoken failed ({}): stdout {stdout:?}, stderr {:?}",
            bin.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(stdout)
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix(LISTENING_PREFIX)?;
    let mut addr: SocketAddr = rest.trim().parse().ok()?;
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        _ => {}
    }
    Some(addr)
}

async fn signal(pid: u32, name: &str) -> Result<()> {
    // `kill(1)`: the workspace forbids unsafe code, so no direct libc call.
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .await
        .map_err(|e| Error::new(format!("running kill -{name} {pid}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::new(format!("kill -{name} {pid} failed: {status}")))
    }
}

async fn drain(
    stream: impl AsyncRead + Unpin,
    log: Arc<Mutex<String>>,
    mut listening: Option<oneshot::Sender<String>>,
    panics: Option<Arc<Mutex<Vec<String>>>>,
) {
    let mut lines = BufReader::new(stream).lines();
    // The line after "thread '…' panicked at <file>:" holds the message.
    let mut message_follows = false;
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(panics) = &panics
            && (message_follows || line.contains(" panicked at "))
            && let Ok(mut panics) = panics.lock()
        {
            message_follows = !message_follows && line.trim_end().ends_with(':');
            panics.push(line.clone());
        }
        if line.starts_with(LISTENING_PREFIX)
            && let Some(tx) = listening.take()
        {
            let _ = tx.send(line.clone());
        }
        if std::env::var_os("SPINDLE_TEST_ECHO").is_some() {
            eprintln!("[spindle] {line}");
        }
        if let Ok(mut log) = log.lock() {
            log.push_str(&line);
            log.push('\n');
            if log.len() > 2 * LOG_KEEP {
                let cut = log.len() - LOG_KEEP;
                let cut = (cut..log.len())
                    .find(|&i| log.is_char_boundary(i))
                    .unwrap_or(log.len());
                log.drain(..cut);
            }
        }
    }
    // Dropping `listening` unsent tells the waiter that stdout ended.
}

fn tail(log: &Arc<Mutex<String>>) -> String {
    let text = log.lock().map(|l| l.clone()).unwrap_or_default();
    if text.len() <= LOG_KEEP {
        return text;
    }
    let cut = text.len() - LOG_KEEP;
    let cut = (cut..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[cut..].to_owned()
}

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> std::io::Result<TempDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        assert_eq!(
            parse_listening("spindle: listening on 127.0.0.1:8000"),
            Some("127.0.0.1:8000".parse().unwrap())
        );
        assert_eq!(
            parse_listening("spindle: listening on 0.0.0.0:41234\n"),
            Some("127.0.0.1:41234".parse().unwrap())
        );
        assert_eq!(
            parse_listening("spindle: listening on [::]:9"),
            Some("[::1]:9".parse().unwrap())
        );
        assert_eq!(parse_listening("listening on 127.0.0.1:1"), None);
    }

    #[tokio::test]
    async fn a_panic_on_stderr_is_kept_with_its_message() {
        let stderr: &[u8] = b"INFO started\nthread 'tokio-runtime-worker' panicked at \
            core/src/x.rs:1:2:\nboom\nINFO still serving\n";
        let log = Arc::new(Mutex::new(String::new()));
        let panics = Arc::new(Mutex::new(Vec::new()));
        drain(stderr, log, None, Some(panics.clone())).await;
        let panics = panics.lock().unwrap().clone();
        assert_eq!(
            panics,
            [
                "thread 'tokio-runtime-worker' panicked at core/src/x.rs:1:2:",
                "boom"
            ]
        );
    }
}
