//! Publishing through the HTTP API with every reply checked: one publication per
//! `POST /api/publish`, or many publish commands per `POST /api/batch` (docs/protocol.md §6.2). A
//! publish counts as done only when its reply is a result with an offset and an epoch; that
//! position goes into a [`Ledger`] so the run can prove the offsets are contiguous.
//!
//! Publication `seq` goes to channel `seq % channels.len()` (round-robin) and carries the
//! payload of [`crate::payload`] with `seq` in it.

use crate::api_replies::{self, Failure};
use crate::http::ApiConnection;
use crate::ledger::Ledger;
use crate::payload::write_payload;
use crate::server::Endpoints;
use anyhow::Result;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one or more publishers got back.
#[derive(Debug, Default)]
pub struct PublishTally {
    /// Publishes answered with a position.
    pub ok: u64,
    /// Publishes answered otherwise (or not at all).
    pub failed: u64,
    /// HTTP requests made.
    pub requests: u64,
    /// Failures by kind, with their count.
    pub errors: BTreeMap<Failure, u64>,
    /// Positions per channel.
    pub ledger: Ledger,
}

impl PublishTally {
    pub fn new(channels: usize) -> PublishTally {
        PublishTally {
            ledger: Ledger::new(channels),
            ..PublishTally::default()
        }
    }

    /// Adds another publisher's tally over the same channels.
    pub fn merge(&mut self, other: PublishTally) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.requests += other.requests;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.ledger.merge(other.ledger);
    }

    fn fail(&mut self, kind: Failure, publishes: u64) {
        self.failed += publishes;
        *self.errors.entry(kind).or_default() += publishes;
    }
}

/// One kept-alive API connection publishing with checked replies.
#[derive(Debug)]
pub struct CheckedPublisher {
    connection: ApiConnection,
    endpoints: Endpoints,
    body: Vec<u8>,
    channels: Arc<[String]>,
    size: usize,
    /// Time zero of the payload stamps.
    base: Instant,
    pub tally: PublishTally,
}

impl CheckedPublisher {
    pub async fn open(
        endpoints: &Endpoints,
        channels: Arc<[String]>,
        size: usize,
        base: Instant,
    ) -> Result<CheckedPublisher> {
        Ok(CheckedPublisher {
            connection: connect(endpoints).await?,
            endpoints: endpoints.clone(),
            body: Vec::with_capacity(size + 128),
            tally: PublishTally::new(channels.len()),
            channels,
            size,
            base,
        })
    }

    /// `POST /api/publish` of publication `seq`; returns the request's latency.
    pub async fn publish(&mut self, seq: u64) -> Duration {
        self.body.clear();
        let channel = self.write_publish(seq);
        let sent = Instant::now();
        let outcome = match self.connection.post_raw("publish", &self.body).await {
            Ok((status, body)) => Ok(api_replies::publish(status, body)),
            Err(error) => Err(error),
        };
        let latency = sent.elapsed();
        self.tally.requests += 1;
        match outcome {
            Ok(Ok(position)) => {
                self.tally.ok += 1;
                self.tally.ledger.record(channel, position);
            }
            Ok(Err(failure)) => self.tally.fail(failure, 1),
            Err(error) => self.transport_failed(&error, 1).await,
        }
        latency
    }

    /// `POST /api/batch` with one publish command per sequence number of `seqs` (`parallel`:
    /// the server may run them concurrently); returns the request's latency.
    pub async fn publish_batch(&mut self, seqs: Range<u64>, parallel: bool) -> Duration {
        let n = seqs.end.saturating_sub(seqs.start);
        self.body.clear();
        self.body.extend_from_slice(b"{\"commands\":[");
        for seq in seqs.clone() {
            if seq != seqs.start {
                self.body.push(b',');
            }
            self.body.extend_from_slice(b"{\"publish\":");
            self.write_publish(seq);
            self.body.push(b'}');
        }
        self.body.push(b']');
        if parallel {
            self.body.extend_from_slice(b",\"parallel\":true");
        }
        self.body.push(b'}');
        let sent = Instant::now();
        let commands = usize::try_from(n).unwrap_or(usize::MAX);
        let outcome = match self.connection.post_raw("batch", &self.body).await {
            Ok((status, body)) => Ok(api_replies::batch(status, body, commands)),
            Err(error) => Err(error),
        };
        let latency = sent.elapsed();
        self.tally.requests += 1;
        match outcome {
            Ok(Ok(replies)) => {
                for (seq, reply) in seqs.zip(replies) {
                    match reply {
                        Ok(position) => {
                            self.tally.ok += 1;
                            let channel = self.channel_of(seq);
                            self.tally.ledger.record(channel, position);
                        }
                        Err(failure) => self.tally.fail(failure, 1),
                    }
                }
            }
            Ok(Err(failure)) => self.tally.fail(failure, n),
            Err(error) => self.transport_failed(&error, n).await,
        }
        latency
    }

    fn channel_of(&self, seq: u64) -> usize {
        usize::try_from(seq % self.channels.len() as u64).unwrap_or(0)
    }

    /// Appends `{"channel":…,"data":<payload>}` for `seq`; returns the channel index.
    fn write_publish(&mut self, seq: u64) -> usize {
        let channel = self.channel_of(seq);
        self.body.extend_from_slice(b"{\"channel\":\"");
        self.body
            .extend_from_slice(self.channels[channel].as_bytes());
        self.body.extend_from_slice(b"\",\"data\":");
        let now = u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX);
        write_payload(&mut self.body, self.size, now, seq);
        self.body.push(b'}');
        channel
    }

    /// The connection is unusable after a transport error: count the loss, open a new one.
    async fn transport_failed(&mut self, error: &anyhow::Error, publishes: u64) {
        self.tally
            .fail(format!("transport error: {error:#}"), publishes);
        if let Ok(fresh) = connect(&self.endpoints).await {
            self.connection = fresh;
        }
    }
}

/// A kept-alive connection to the API of `endpoints`.
pub async fn connect(endpoints: &Endpoints) -> Result<ApiConnection> {
    ApiConnection::open(
        endpoints.api_addr,
        endpoints.api.clone(),
        endpoints.api_key.clone(),
    )
    .await
}

/// A run-unique channel-name prefix, so channels never carry history from an earlier run on an
/// attached server: `<kind>-<ms since the epoch, base 36>`.
pub fn run_prefix(kind: &str) -> String {
    let mut ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut digits = Vec::new();
    while ms > 0 {
        let digit = u8::try_from(ms % 36).unwrap_or(0);
        digits.push(if digit < 10 {
            b'0' + digit
        } else {
            b'a' + digit - 10
        });
        ms /= 36;
    }
    digits.reverse();
    format!("{kind}-{}", String::from_utf8_lossy(&digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_names_a_channel_may_have() {
        let prefix = run_prefix("bench-hp");
        assert!(prefix.starts_with("bench-hp-"));
        assert!(prefix.len() > "bench-hp-".len());
        assert!(
            prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        );
    }
}
