//! One benchmark connection: opens the WebSocket, connects with a token, subscribes to one
//! channel (fully decoding those two replies), then only counts what arrives — stamps found by
//! [`crate::wire::Scanner`], pings answered with pongs — until told to stop. The same counting
//! loop serves the peers of a side-by-side run ([`crate::wire::Wire`]). Scenarios that
//! need to see replies and pushes in full (recovery) use [`Subscriber::request`] and
//! [`Subscriber::next_replies`] instead of the counting loop.

use crate::histogram::Histogram;
use crate::payload::Item;
use crate::wire::{Scanner, Wire};
use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use spindle_proto::Format;
use spindle_proto::client::{Command, ConnectRequest, Reply, SubscribeRequest, SubscribeResult};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long one setup step (handshake, connect, subscribe) may take under a connection storm.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Read buffer per connection (tungstenite's default, 128 KiB, would cost 1.3 GB at 10k).
const READ_BUFFER: usize = 8 * 1024;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What every connection reports into while running.
#[derive(Debug)]
pub struct Shared {
    /// Time zero of all timestamps (payload stamps are µs since this).
    pub base: Instant,
    pub latency: Histogram,
    /// Publications received by all connections.
    pub delivered: AtomicU64,
    /// µs since `base` of the latest frame carrying a publication.
    pub last_delivery_micros: AtomicU64,
    /// Connections that ended (close frame or error) before being told to stop.
    pub lost: AtomicU64,
    /// Per publication (by sequence number): the fastest and the slowest subscriber's latency
    /// in µs, which separate the pipeline's delay (fastest) from the fan-out's (slowest).
    pub per_publication: Box<[Extremes]>,
}

/// The smallest and largest latency seen for one publication.
#[derive(Debug)]
pub struct Extremes {
    pub fastest: AtomicU64,
    pub slowest: AtomicU64,
}

impl Extremes {
    fn record(&self, micros: u64) {
        if micros < self.fastest.load(Ordering::Relaxed) {
            self.fastest.fetch_min(micros, Ordering::Relaxed);
        }
        if micros > self.slowest.load(Ordering::Relaxed) {
            self.slowest.fetch_max(micros, Ordering::Relaxed);
        }
    }
}

impl Shared {
    /// Time zero `base`, tracking extremes for `publications` sequence numbers.
    pub fn new(base: Instant, publications: u64) -> Shared {
        Shared {
            per_publication: (0..publications)
                .map(|_| Extremes {
                    fastest: AtomicU64::new(u64::MAX),
                    slowest: AtomicU64::new(0),
                })
                .collect(),
            base,
            latency: Histogram::new(),
            delivered: AtomicU64::new(0),
            last_delivery_micros: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        }
    }

    /// µs since `base`.
    pub fn now_micros(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// A connected (and usually subscribed) connection.
#[derive(Debug)]
pub struct Subscriber {
    ws: Ws,
    wire: Wire,
    /// The client protocol's encoding (commands and replies; unused by the peers' wires).
    format: Format,
    next_id: u32,
    /// Non-ping replies that arrived while waiting for a command's reply (pushes), in order.
    early: Vec<Reply>,
}

/// What one connection saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Bit `seq` set once publication `seq` arrived.
    pub seen: Vec<u64>,
    pub received: u64,
    pub duplicates: u64,
    /// Stamps with a sequence number beyond the expected range.
    pub unexpected: u64,
    pub pings: u64,
    /// WebSocket frames that carried at least one publication (shows the server's batching).
    pub publication_frames: u64,
    /// How the connection ended early, if it did (close code and reason, or an error).
    pub ended: Option<String>,
}

impl Tally {
    pub fn has(&self, seq: u64) -> bool {
        let (word, bit) = (seq / 64, seq % 64);
        usize::try_from(word)
            .ok()
            .and_then(|w| self.seen.get(w))
            .is_some_and(|w| w & (1 << bit) != 0)
    }

    /// Marks `seq`; false if it was already marked or is out of range.
    fn mark(&mut self, seq: u64) -> bool {
        let (word, bit) = (seq / 64, seq % 64);
        let Some(w) = usize::try_from(word)
            .ok()
            .and_then(|w| self.seen.get_mut(w))
        else {
            self.unexpected += 1;
            return false;
        };
        if *w & (1 << bit) != 0 {
            self.duplicates += 1;
            return false;
        }
        *w |= 1 << bit;
        true
    }
}

impl Subscriber {
    /// Opens `url`, connects with `token` and subscribes to `channel` (the peers' wires: their
    /// own way of subscribing, without a token).
    pub async fn open(url: &str, wire: Wire, token: &str, channel: &str) -> Result<Subscriber> {
        let format = match wire {
            Wire::Centrifugo(format) => format,
            Wire::Plain => return Subscriber::open_plain(url, channel).await,
            Wire::Nats => return Subscriber::open_nats(url, channel).await,
        };
        let mut subscriber = Subscriber::connect(url, format, token).await?;
        subscriber
            .subscribe(SubscribeRequest {
                channel: channel.to_owned(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("subscribe {channel}"))?;
        Ok(subscriber)
    }

    /// Opens `url` and connects with `token` (no subscription yet).
    pub async fn connect(url: &str, format: Format, token: &str) -> Result<Subscriber> {
        let protocol = (format == Format::Protobuf).then_some("centrifuge-protobuf");
        let mut subscriber = Subscriber {
            ws: open_websocket(url, protocol).await?,
            wire: Wire::Centrifugo(format),
            format,
            next_id: 1,
            early: Vec::new(),
        };
        subscriber
            .request(Command {
                connect: Some(ConnectRequest {
                    token: token.to_owned(),
                    name: "spindle-bench".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .context("connect")?;
        Ok(subscriber)
    }

    /// Sends `request` and returns the subscribe result; an error reply is an error
    /// (`error reply <code> <message>`).
    pub async fn subscribe(&mut self, request: SubscribeRequest) -> Result<SubscribeResult> {
        let reply = self
            .request(Command {
                subscribe: Some(request),
                ..Default::default()
            })
            .await?;
        Ok(reply.subscribe.unwrap_or_default())
    }

    /// Sends `command` under the next id and waits for the reply with that id, answering pings
    /// meanwhile and keeping other replies for [`Subscriber::take_early`].
    pub async fn request(&mut self, mut command: Command) -> Result<Reply> {
        let id = self.next_id;
        self.next_id += 1;
        command.id = id;
        let frame = match self.format {
            Format::Json => Message::text(serde_json::to_string(&command)?),
            Format::Protobuf => Message::binary(command.encode_length_delimited_to_vec()),
        };
        self.ws.send(frame).await?;
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        loop {
            let replies = tokio::time::timeout_at(deadline, self.next_replies())
                .await
                .with_context(|| format!("no reply to command {id}"))??
                .context("connection ended")?;
            let mut answer = None;
            for reply in replies {
                if reply.id == id && answer.is_none() {
                    answer = Some(reply);
                } else {
                    self.early.push(reply);
                }
            }
            if let Some(reply) = answer {
                if let Some(error) = reply.error {
                    bail!("error reply {} {}", error.code, error.message);
                }
                return Ok(reply);
            }
        }
    }

    /// Replies that arrived while a command waited for its own, oldest first.
    pub fn take_early(&mut self) -> Vec<Reply> {
        std::mem::take(&mut self.early)
    }

    /// The replies of the next frame, fully decoded, with pings answered and left out; `None`
    /// once the connection ended (a close frame is an error).
    pub async fn next_replies(&mut self) -> Result<Option<Vec<Reply>>> {
        loop {
            let Some(message) = self.ws.next().await else {
                return Ok(None);
            };
            let mut replies = match message? {
                Message::Text(text) => text
                    .as_str()
                    .split('\n')
                    .filter(|l| !l.trim().is_empty())
                    .map(serde_json::from_str::<Reply>)
                    .collect::<Result<Vec<_>, _>>()?,
                Message::Binary(mut data) => {
                    let mut replies = Vec::new();
                    while !data.is_empty() {
                        replies.push(Reply::decode_length_delimited(&mut data)?);
                    }
                    replies
                }
                Message::Close(frame) => bail!("closed by the server: {frame:?}"),
                _ => continue,
            };
            let before = replies.len();
            replies.retain(|reply| *reply != Reply::default());
            for _ in replies.len()..before {
                self.pong().await?;
            }
            if !replies.is_empty() {
                return Ok(Some(replies));
            }
        }
    }

    /// A plain WebSocket peer: the URL path names the channel; the handshake subscribes.
    async fn open_plain(url: &str, channel: &str) -> Result<Subscriber> {
        let url = format!("{}/{channel}", url.trim_end_matches('/'));
        Ok(Subscriber {
            ws: open_websocket(&url, None).await?,
            wire: Wire::Plain,
            format: Format::Json,
            next_id: 1,
            early: Vec::new(),
        })
    }

    /// nats-server's WebSocket listener: waits for `INFO`, sends `CONNECT` and `SUB`, and
    /// takes the `PONG` to a `PING` sent after them as the subscription being in place.
    async fn open_nats(url: &str, channel: &str) -> Result<Subscriber> {
        let mut ws = open_websocket(url, None).await?;
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        let mut greeted = false;
        let mut scanner = Scanner::new(Wire::Nats);
        loop {
            let message = tokio::time::timeout_at(deadline, ws.next())
                .await
                .context("no INFO / PONG from nats-server")?
                .context("nats-server closed the connection")??;
            let frame: &[u8] = match &message {
                Message::Text(text) => text.as_bytes(),
                Message::Binary(data) => data,
                Message::Close(frame) => bail!("closed by nats-server: {frame:?}"),
                _ => continue,
            };
            if let Some(error) = find_line(frame, b"-ERR") {
                bail!("nats-server: {error}");
            }
            if !greeted && frame.starts_with(b"INFO ") {
                greeted = true;
                let hello = format!(
                    "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":false,\
                     \"protocol\":1,\"name\":\"spindle-bench\"}}\r\nSUB {channel} 1\r\nPING\r\n"
                );
                ws.send(Message::binary(hello.into_bytes())).await?;
                continue;
            }
            let mut pinged = 0;
            scanner
                .scan(frame, |item| pinged += u32::from(item == Item::Ping))
                .map_err(|_| anyhow::anyhow!("undecodable frame from nats-server"))?;
            for _ in 0..pinged {
                ws.send(Message::binary(&b"PONG\r\n"[..])).await?;
            }
            if greeted && find_line(frame, b"PONG").is_some() {
                return Ok(Subscriber {
                    ws,
                    wire: Wire::Nats,
                    format: Format::Json,
                    next_id: 1,
                    early: Vec::new(),
                });
            }
        }
    }

    async fn pong(&mut self) -> Result<()> {
        let Some(pong) = self.wire.pong() else {
            return Ok(());
        };
        let frame = match self.wire {
            Wire::Centrifugo(Format::Json) => Message::text(std::str::from_utf8(pong)?),
            _ => Message::binary(pong),
        };
        Ok(self.ws.send(frame).await?)
    }

    /// Counts publications (sequence numbers below `expected`) until `stop` turns true.
    pub async fn run(
        mut self,
        shared: &Shared,
        expected: u64,
        mut stop: watch::Receiver<bool>,
    ) -> Tally {
        let words = usize::try_from(expected.div_ceil(64)).unwrap_or(0);
        let mut tally = Tally {
            seen: vec![0; words],
            ..Tally::default()
        };
        let mut scanner = Scanner::new(self.wire);
        loop {
            let message = tokio::select! {
                biased;
                _ = stop.changed() => break,
                message = self.ws.next() => message,
            };
            let frame: &[u8] = match &message {
                Some(Ok(Message::Text(text))) => text.as_bytes(),
                Some(Ok(Message::Binary(data))) => data,
                Some(Ok(Message::Close(frame))) => {
                    tally.ended = Some(match frame {
                        Some(f) => format!("closed {} {}", u16::from(f.code), f.reason.as_str()),
                        None => "closed without a code".into(),
                    });
                    break;
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => {
                    tally.ended = Some(format!("error: {error}"));
                    break;
                }
                None => {
                    tally.ended = Some("ended without a close frame".into());
                    break;
                }
            };
            let now = shared.now_micros();
            let mut pings = 0;
            let mut publications = 0;
            let scanned = scanner.scan(frame, |item| match item {
                Item::Ping => pings += 1,
                Item::Publication { sent_micros, seq } => {
                    publications += 1;
                    if tally.mark(seq) {
                        let latency = now.saturating_sub(sent_micros);
                        shared.latency.record(latency);
                        if let Some(extremes) = usize::try_from(seq)
                            .ok()
                            .and_then(|i| shared.per_publication.get(i))
                        {
                            extremes.record(latency);
                        }
                    }
                }
                Item::Other => {}
            });
            if scanned.is_err() {
                tally.ended = Some("undecodable frame".into());
                break;
            }
            if publications > 0 {
                tally.received += publications;
                shared.delivered.fetch_add(publications, Ordering::Relaxed);
                tally.publication_frames += 1;
                shared
                    .last_delivery_micros
                    .fetch_max(now, Ordering::Relaxed);
            }
            for _ in 0..pings {
                tally.pings += 1;
                if let Err(error) = self.pong().await {
                    tally.ended = Some(format!("pong failed: {error}"));
                    break;
                }
            }
            if tally.ended.is_some() {
                break;
            }
        }
        if tally.ended.is_some() {
            shared.lost.fetch_add(1, Ordering::Relaxed);
        }
        tally
    }
}

/// Opens a WebSocket to `url`, asking for sub-protocol `protocol` if given.
async fn open_websocket(url: &str, protocol: Option<&'static str>) -> Result<Ws> {
    let mut request = url.into_client_request()?;
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0);
    let (ws, _) = tokio::time::timeout(
        SETUP_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(request, Some(config), true),
    )
    .await
    .context("WebSocket handshake timed out")?
    .with_context(|| format!("WebSocket handshake with {url} failed"))?;
    Ok(ws)
}

/// The first line of `frame` starting with `prefix`, as text.
fn find_line(frame: &[u8], prefix: &[u8]) -> Option<String> {
    frame
        .split(|&b| b == b'\n')
        .find(|line| line.starts_with(prefix))
        .map(|line| String::from_utf8_lossy(line).trim().to_owned())
}

/// An HS256 connection token for `user`, valid for a day.
pub fn token(user: &str, secret: &str) -> Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({"sub": user, "exp": now + 86_400});
    spindle_hub::jwt::sign_hs256(&claims, secret).map_err(|e| anyhow::anyhow!("signing: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_marks_each_sequence_once() {
        let mut tally = Tally {
            seen: vec![0; 2],
            ..Tally::default()
        };
        assert!(tally.mark(0));
        assert!(tally.mark(127));
        assert!(!tally.mark(127));
        assert!(!tally.mark(128));
        assert_eq!((tally.duplicates, tally.unexpected), (1, 1));
        assert!(tally.has(0) && tally.has(127) && !tally.has(1) && !tally.has(500));
    }

    #[test]
    fn tokens_are_three_part_jwts() {
        assert_eq!(token("u", "secret").unwrap().split('.').count(), 3);
    }
}
