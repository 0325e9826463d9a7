//! Publishing to nats-server over its client protocol (TCP), for the side-by-side run: the
//! backend's way of publishing to NATS, as `POST /api/publish` is to Spindle.
//!
//! nats-server does not answer a publish, so each `PUB` is followed by a `PING`: the `PONG`
//! tells the publish was processed (a connection's protocol is handled in order) and times it
//! like an API reply.

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long the `INFO` / `PONG` of the handshake may take.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One publishing connection.
#[derive(Debug)]
pub struct NatsPublisher {
    stream: BufReader<TcpStream>,
    out: Vec<u8>,
    line: String,
}

impl NatsPublisher {
    /// Connects, reads `INFO`, sends `CONNECT` and waits for the `PONG` to a `PING`.
    pub async fn open(addr: SocketAddr) -> Result<NatsPublisher> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to nats-server at {addr}"))?;
        stream.set_nodelay(true)?;
        let mut publisher = NatsPublisher {
            stream: BufReader::new(stream),
            out: Vec::with_capacity(512),
            line: String::new(),
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, publisher.handshake())
            .await
            .context("nats-server handshake timed out")??;
        Ok(publisher)
    }

    async fn handshake(&mut self) -> Result<()> {
        self.read_line().await?;
        if !self.line.starts_with("INFO ") {
            bail!("nats-server greeted with {:?}, not INFO", self.line.trim());
        }
        self.stream
            .get_mut()
            .write_all(
                b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\
                  \"name\":\"spindle-bench-publisher\"}\r\nPING\r\n",
            )
            .await?;
        self.wait_pong().await
    }

    /// `PUB <subject> <n>` with `payload`, then `PING`; returns once the `PONG` arrived.
    pub async fn publish(&mut self, subject: &str, payload: &[u8]) -> Result<()> {
        use std::io::Write as _;
        self.out.clear();
        write!(self.out, "PUB {subject} {}\r\n", payload.len())?;
        self.out.extend_from_slice(payload);
        self.out.extend_from_slice(b"\r\nPING\r\n");
        self.stream.get_mut().write_all(&self.out).await?;
        self.wait_pong().await
    }

    /// Reads lines until `PONG`, answering the server's `PING`s; `-ERR` is an error.
    async fn wait_pong(&mut self) -> Result<()> {
        loop {
            self.read_line().await?;
            match self.line.trim_end() {
                "PONG" => return Ok(()),
                "PING" => self.stream.get_mut().write_all(b"PONG\r\n").await?,
                line if line.starts_with("-ERR") => bail!("nats-server: {line}"),
                _ => {}
            }
        }
    }

    async fn read_line(&mut self) -> Result<()> {
        self.line.clear();
        if self.stream.read_line(&mut self.line).await? == 0 {
            bail!("nats-server closed the connection");
        }
        Ok(())
    }
}
