//! Redis servers the tests start themselves: `redis-server` child processes on spare
//! loopback ports, without persistence, each watched by a small shell that kills it when the
//! test process is gone (a test binary ends with `exit`, which runs no destructors of
//! statics). A missing `redis-server` / `redis-cli` or a server that does not come up fails
//! the test with a clear message: these tests never skip.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` (killed when dropped).
pub struct RedisProcess {
    pub port: u16,
    child: Child,
    _dir: Option<tempdir::Dir>,
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        // Ask the server itself to stop; the watcher shell ends with it.
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .output();
        let _ = self.child.wait();
    }
}

impl RedisProcess {
    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A port nobody listens on now (and, when `with_bus`, nor on port + 10000, the cluster bus).
pub fn spare_port(with_bus: bool) -> u16 {
    for _ in 0..200 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no spare loopback port found for a test redis-server");
}

fn ping(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "ping"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "PONG")
}

/// Starts `redis-server --port <spare> --save '' --appendonly no` plus `extra` arguments and
/// waits until it answers PING.
pub fn start(extra: &[&str], with_bus: bool) -> RedisProcess {
    let port = spare_port(with_bus);
    let dir = test_dir(port);
    let mut args: Vec<String> = vec![
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
        "--daemonize".into(),
        "no".into(),
        "--dir".into(),
        dir.display().to_string(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    spawn(port, dir, args)
}

/// A Sentinel (`redis-server <conf> --sentinel`) watching the master at `master_port` under
/// the name `master_name`, with a quorum of one.
pub fn start_sentinel(master_port: u16, master_name: &str) -> RedisProcess {
    let port = spare_port(false);
    let dir = test_dir(port);
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {master_name} 127.0.0.1 {master_port} 1\nsentinel down-after-milliseconds {master_name} 5000\n",
            dir.display()
        ),
    )
    .expect("write sentinel.conf");
    spawn(
        port,
        dir,
        vec![conf.display().to_string(), "--sentinel".into()],
    )
}

fn test_dir(port: u16) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("spindle-redis-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a directory for the test redis-server");
    dir
}

fn spawn(port: u16, dir: std::path::PathBuf, args: Vec<String>) -> RedisProcess {
    // The watcher: starts redis-server, then kills it as soon as the test process is gone.
    let script = r#"redis-server "$@" & r=$!; trap 'kill $r 2>/dev/null; wait $r' EXIT TERM;
while kill -0 "$WATCHED" 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.3; done"#;
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("these tests start their own Redis servers: `redis-server` is not installed");
    }
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("redis-watch")
        .args(&args)
        .env("WATCHED", std::process::id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir(&dir)
        .spawn()
        .expect("start sh for a test redis-server");
    let process = RedisProcess {
        port,
        child,
        _dir: Some(tempdir::Dir(dir)),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ping(port) {
        assert!(
            Instant::now() < deadline,
            "redis-server {args:?} did not answer PING within 10 s (is redis-cli installed?)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    process
}

/// Plain servers for client-side sharding.
pub fn start_servers(count: usize) -> Vec<RedisProcess> {
    (0..count).map(|_| start(&[], false)).collect()
}

/// A Redis Cluster of `count` masters (no replicas), created with `redis-cli --cluster
/// create`, returned once every slot is served.
pub fn start_cluster(count: usize) -> Vec<RedisProcess> {
    let nodes: Vec<RedisProcess> = (0..count)
        .map(|_| {
            start(
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ],
                true,
            )
        })
        .collect();
    let mut create = Command::new("redis-cli");
    create.arg("--cluster").arg("create");
    for node in &nodes {
        create.arg(format!("127.0.0.1:{}", node.port));
    }
    let out = create
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("run redis-cli --cluster create");
    assert!(
        out.status.success(),
        "redis-cli --cluster create failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in &nodes {
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &node.port.to_string(), "cluster", "info"])
                .output()
                .expect("redis-cli cluster info");
            let text = String::from_utf8_lossy(&info.stdout);
            if text.contains("cluster_state:ok") && text.contains("cluster_slots_ok:16384") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not ready within 20 s: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    nodes
}

/// A server that also listens with TLS on `tls_port`: a CA and a server certificate for
/// 127.0.0.1 are made with `openssl` in a temporary directory. Returns the server, the TLS
/// port and the CA's PEM.
pub fn start_tls() -> (RedisProcess, u16, String) {
    let tls = start_tls_with(false);
    (tls.server, tls.port, tls.ca)
}

/// A TLS server and the PEMs a client needs.
pub struct TlsServer {
    pub server: RedisProcess,
    pub port: u16,
    /// The CA that signed the server's and the client's certificates.
    pub ca: String,
    /// A client certificate signed by `ca`, and its key.
    pub client_cert: String,
    pub client_key: String,
}

/// [`start_tls`], and with `require_client_certificates` the server refuses clients without a
/// certificate signed by the CA (`--tls-auth-clients yes`).
pub fn start_tls_with(require_client_certificates: bool) -> TlsServer {
    let dir = test_dir(spare_port(false));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("these tests need `openssl` to make a test certificate");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=spindle test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("write ext.cnf");
    for name in ["server", "client"] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            &format!("{name}.pem"),
        ]);
    }
    let path = |name: &str| dir.join(name).display().to_string();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("read a test PEM");
    let port = spare_port(false);
    let server = start(
        &[
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &path("server.pem"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.pem"),
            "--tls-auth-clients",
            if require_client_certificates {
                "yes"
            } else {
                "no"
            },
        ],
        false,
    );
    let tls = TlsServer {
        server,
        port,
        ca: read("ca.pem"),
        client_cert: read("client.pem"),
        client_key: read("client.key"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    tls
}
