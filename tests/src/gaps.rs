//! The no-silent-gap checker (issue 15, DESIGN §6): a workload records every publication it
//! makes ([`Ledger`]) and everything each client sees ([`Seen`]: subscribe replies,
//! publications, signals); [`judge`] then fails on any publication missing at a client without
//! a signal covering it, any `(epoch, offset)` with two payloads, any order difference, any
//! duplicate delivered to the application, and any payload that is not the one published.
//!
//! [`Recorder`] is the client side of a workload: a raw protocol client that behaves like an
//! SDK with recovery on (on unsubscribe 2500 it resubscribes recovering from its position; on
//! a disconnect it reconnects and does the same), logging what it sees.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use crate::client::{Client, Event};
use crate::proto::{Command, Publication, SubscribeRequest, SubscribeResult};
use crate::{Error, Format, Result, fixture};

/// What a workload published: `(epoch, offset)` → payload hash, per channel.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    channels: BTreeMap<String, BTreeMap<u64, (String, u64)>>,
    /// `(epoch, offset)`s published twice with different payloads.
    conflicts: Vec<String>,
}

impl Ledger {
    /// Records a publication: the API's answer (`offset`, `epoch`) to publishing `data`.
    pub fn published(&mut self, channel: &str, epoch: &str, offset: u64, data: &[u8]) {
        let hash = hash_of(data);
        let entry = self.channels.entry(channel.to_owned()).or_default();
        match entry.get(&offset) {
            Some((e, h)) if e == epoch && *h != hash => self
                .conflicts
                .push(format!("{channel} {epoch}:{offset} has two payloads")),
            _ => {
                entry.insert(offset, (epoch.to_owned(), hash));
            }
        }
    }

    /// Records a publication from the API's JSON answer to `publish` (the whole answer or its
    /// `result`).
    pub fn published_by_api(&mut self, channel: &str, answer: &serde_json::Value, data: &[u8]) {
        let result = answer.get("result").unwrap_or(answer);
        let offset = result["offset"].as_u64().unwrap_or_default();
        let epoch = result["epoch"].as_str().unwrap_or_default();
        self.published(channel, epoch, offset, data);
    }

    fn top(&self, channel: &str) -> u64 {
        self.channels
            .get(channel)
            .and_then(|c| c.keys().next_back().copied())
            .unwrap_or_default()
    }

    /// Publications recorded.
    pub fn len(&self) -> usize {
        self.channels.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One thing a client saw in one channel, in the order it saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A subscribe reply: where the client now is. Recovered publications follow as
    /// [`Seen::Publication`]s.
    Subscribed {
        offset: u64,
        epoch: String,
        was_recovering: bool,
        recovered: bool,
    },
    /// A publication handed to the application.
    Publication { offset: u64, hash: u64 },
    /// A signal that allows a gap: unsubscribe (2500) or disconnect (3010) code.
    Signal(u32),
}

impl Seen {
    pub fn subscribed(result: &SubscribeResult) -> Seen {
        Seen::Subscribed {
            offset: result.offset,
            epoch: result.epoch.clone(),
            was_recovering: result.was_recovering,
            recovered: result.recovered,
        }
    }

    pub fn publication(publication: &Publication) -> Seen {
        Seen::Publication {
            offset: publication.offset,
            hash: hash_of(&publication.data),
        }
    }
}

/// The checker's totals and findings.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    pub publications: usize,
    pub deliveries: usize,
    pub signals: usize,
    pub silent_gaps: Vec<String>,
    pub duplicates: Vec<String>,
    pub misorders: Vec<String>,
    pub wrong_payloads: Vec<String>,
    pub conflicts: Vec<String>,
}

impl Verdict {
    /// Nothing silent, nothing twice, nothing out of order, nothing altered.
    pub fn is_clean(&self) -> bool {
        self.silent_gaps.is_empty()
            && self.duplicates.is_empty()
            && self.misorders.is_empty()
            && self.wrong_payloads.is_empty()
            && self.conflicts.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "publications {}, deliveries {}, signals {}, silent gaps {}, duplicates {}, \
             misorders {}, wrong payloads {}, conflicts {}",
            self.publications,
            self.deliveries,
            self.signals,
            self.silent_gaps.len(),
            self.duplicates.len(),
            self.misorders.len(),
            self.wrong_payloads.len(),
            self.conflicts.len()
        )?;
        for finding in self
            .silent_gaps
            .iter()
            .chain(&self.duplicates)
            .chain(&self.misorders)
            .chain(&self.wrong_payloads)
            .chain(&self.conflicts)
            .take(20)
        {
            write!(f, "\n  {finding}")?;
        }
        Ok(())
    }
}

/// Judges what every client saw (`(client, channel, seen)`) against the ledger.
pub fn judge<'a>(
    ledger: &Ledger,
    clients: impl IntoIterator<Item = (&'a str, &'a str, &'a [Seen])>,
) -> Verdict {
    let mut verdict = Verdict {
        publications: ledger.len(),
        conflicts: ledger.conflicts.clone(),
        ..Verdict::default()
    };
    for (client, channel, seen) in clients {
        judge_one(ledger, client, channel, seen, &mut verdict);
    }
    verdict
}

fn judge_one(ledger: &Ledger, client: &str, channel: &str, seen: &[Seen], v: &mut Verdict) {
    let published = ledger.channels.get(channel);
    let at = |offset: u64| format!("{client} in {channel} at {offset}");
    // The last offset the application has, and whether a signal allows a gap after it.
    let mut position: Option<u64> = None;
    let mut covered = false;
    let mut delivered = HashSet::new();
    for entry in seen {
        match entry {
            Seen::Subscribed {
                offset,
                was_recovering,
                recovered,
                ..
            } => {
                if *was_recovering && *recovered {
                    // Continues from the client's own position; what was missed follows.
                    covered = false;
                    continue;
                }
                if *was_recovering && !recovered {
                    v.signals += 1;
                    covered = true;
                }
                if let Some(p) = position
                    && *offset > p
                    && !covered
                {
                    v.silent_gaps
                        .push(format!("{} to {offset}: skipped by a subscribe", at(p + 1)));
                }
                position = Some(*offset);
                covered = false;
            }
            Seen::Publication { offset, hash } => {
                v.deliveries += 1;
                match published.and_then(|p| p.get(offset)) {
                    Some((_, h)) if h == hash => {}
                    Some(_) => v.wrong_payloads.push(at(*offset)),
                    None => v
                        .wrong_payloads
                        .push(format!("{}: never published", at(*offset))),
                }
                if !delivered.insert(*offset) {
                    v.duplicates.push(at(*offset));
                    continue;
                }
                if let Some(p) = position {
                    if *offset <= p {
                        v.misorders.push(format!("{} after {p}", at(*offset)));
                        continue;
                    }
                    if *offset > p + 1 && !covered {
                        v.silent_gaps
                            .push(format!("{} to {}", at(p + 1), offset - 1));
                    }
                }
                position = Some(*offset);
                covered = false;
            }
            Seen::Signal(_) => {
                v.signals += 1;
                covered = true;
            }
        }
    }
    let top = ledger.top(channel);
    if let Some(p) = position
        && p < top
        && !covered
    {
        v.silent_gaps
            .push(format!("{} to {top}: never arrived", at(p + 1)));
    }
}

fn hash_of(data: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    data.hash(&mut hasher);
    hasher.finish()
}

/// Where a client is in a channel: `(offset, epoch)`.
type Position = (u64, String);

/// A client that behaves like an SDK with recovery on, logging what it sees in each channel.
#[derive(Debug)]
pub struct Recorder {
    url: String,
    user: String,
    channels: Vec<String>,
    client: Option<Client>,
    /// Per channel: the log, and the position to recover from.
    logs: BTreeMap<String, (Vec<Seen>, Option<Position>)>,
    /// Its channels are server-side subscriptions (the token's `channels` claim), recovered
    /// through connect's `subs` when it connects again.
    server_side: bool,
    /// Disconnects seen (each also logged as a signal in every channel).
    pub disconnects: usize,
    /// The longest wait between two publications (any channel).
    pub longest_pause: Duration,
    last_arrival: Option<Instant>,
}

/// How long a recorder waits between attempts while the edge refuses it.
const RETRY: Duration = Duration::from_millis(200);

impl Recorder {
    /// Connects to the edge at `url` as `user` and subscribes to `channels` (each must keep
    /// history with recovery on).
    pub async fn start(url: &str, user: &str, channels: &[String]) -> Result<Recorder> {
        Recorder::start_as(url, user, channels, false).await
    }

    /// Connects to the edge at `url` as `user` with `channels` as server-side subscriptions
    /// (the token's `channels` claim). Churning reconnects it, recovering through connect.
    pub async fn start_server_side(url: &str, user: &str, channels: &[String]) -> Result<Recorder> {
        Recorder::start_as(url, user, channels, true).await
    }

    async fn start_as(
        url: &str,
        user: &str,
        channels: &[String],
        server_side: bool,
    ) -> Result<Recorder> {
        let mut recorder = Recorder {
            server_side,
            url: url.to_owned(),
            user: user.to_owned(),
            channels: channels.to_vec(),
            client: None,
            logs: channels
                .iter()
                .map(|c| (c.clone(), (Vec::new(), None)))
                .collect(),
            disconnects: 0,
            longest_pause: Duration::ZERO,
            last_arrival: None,
        };
        recorder.reconnect(Duration::from_secs(10)).await?;
        Ok(recorder)
    }

    /// Connects (retrying within `patience`) and subscribes to every channel, recovering.
    async fn reconnect(&mut self, patience: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + patience;
        if self.server_side {
            return self.connect_server_side(deadline).await;
        }
        loop {
            let token = fixture::token(&self.user);
            match Client::connect(&self.url, Format::Protobuf, &token).await {
                Ok((client, _)) => {
                    self.client = Some(client);
                    break;
                }
                Err(error) if tokio::time::Instant::now() >= deadline => return Err(error),
                Err(_) => tokio::time::sleep(RETRY).await,
            }
        }
        for channel in self.channels.clone() {
            self.subscribe(&channel, deadline).await?;
        }
        Ok(())
    }

    /// Connects with the channels as server-side subscriptions, recovering each from its
    /// position through connect's `subs` (as the SDKs do), retrying until `deadline`.
    async fn connect_server_side(&mut self, deadline: tokio::time::Instant) -> Result<()> {
        let token = fixture::token_with(serde_json::json!({
            "sub": self.user,
            "channels": self.channels,
        }));
        loop {
            let mut command = crate::client::connect_command(&token);
            if let Some(connect) = command.connect.as_mut() {
                for (channel, (_, position)) in &self.logs {
                    if let Some((offset, epoch)) = position {
                        let request = SubscribeRequest {
                            recover: true,
                            offset: *offset,
                            epoch: epoch.clone(),
                            ..Default::default()
                        };
                        connect.subs.insert(channel.clone(), request);
                    }
                }
            }
            let attempt = async {
                let mut client = Client::open(&self.url, Format::Protobuf).await?;
                let reply = client.request(command).await?;
                Ok::<_, Error>((client, reply))
            };
            let (client, reply) = match attempt.await {
                Ok(done) => done,
                Err(error) if tokio::time::Instant::now() >= deadline => return Err(error),
                Err(_) => {
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let Some(result) = reply.connect else {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::new(format!("connect: {reply:?}")));
                }
                tokio::time::sleep(RETRY).await;
                continue;
            };
            self.client = Some(client);
            for entry in &result.subs {
                if let Some(sub) = &entry.value {
                    self.subscribed(&entry.key, sub)?;
                }
            }
            return Ok(());
        }
    }

    /// Logs a subscribe result (with its recovered publications) and keeps the position.
    fn subscribed(&mut self, channel: &str, result: &SubscribeResult) -> Result<()> {
        let (log, position) = self
            .logs
            .get_mut(channel)
            .ok_or_else(|| Error::new(format!("unknown channel {channel}")))?;
        log.push(Seen::subscribed(result));
        let mut last = (result.offset, result.epoch.clone());
        for publication in &result.publications {
            log.push(Seen::publication(publication));
            last.0 = publication.offset;
        }
        *position = Some(last);
        Ok(())
    }

    /// Subscribes to `channel`, recovering from its position when it has one, retrying
    /// temporary refusals until `deadline`.
    async fn subscribe(&mut self, channel: &str, deadline: tokio::time::Instant) -> Result<()> {
        loop {
            let since = self.logs.get(channel).and_then(|(_, p)| p.clone());
            let request = SubscribeRequest {
                channel: channel.to_owned(),
                recover: since.is_some(),
                offset: since.as_ref().map_or(0, |(o, _)| *o),
                epoch: since.map(|(_, e)| e).unwrap_or_default(),
                ..Default::default()
            };
            let client = self
                .client
                .as_mut()
                .ok_or_else(|| Error::new("not connected"))?;
            let reply = client
                .request(Command {
                    subscribe: Some(request),
                    ..Default::default()
                })
                .await?;
            if let Some(result) = reply.subscribe {
                return self.subscribed(channel, &result);
            }
            let temporary = reply.error.as_ref().is_some_and(|e| e.temporary);
            if !temporary || tokio::time::Instant::now() >= deadline {
                return Err(Error::new(format!("subscribe {channel}: {reply:?}")));
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Reads and reacts for `duration`.
    pub async fn run_for(&mut self, duration: Duration) -> Result<()> {
        self.run_churning(duration, None).await
    }

    /// Reads and reacts for `duration`; with `churn`, every so often unsubscribes from one of
    /// its channels (in turn) and at once subscribes again, recovering from its position —
    /// interest withdrawn and re-added while publications flow.
    pub async fn run_churning(
        &mut self,
        duration: Duration,
        churn: Option<Duration>,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + duration;
        let mut next_churn = churn.map(|every| tokio::time::Instant::now() + every);
        let mut turn = 0;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            if let (Some(at), Some(every)) = (next_churn, churn)
                && now >= at
            {
                let channel = self.channels[turn % self.channels.len()].clone();
                turn += 1;
                self.churn(&channel).await?;
                next_churn = Some(tokio::time::Instant::now() + every);
                continue;
            }
            let until = next_churn.map_or(deadline, |at| at.min(deadline));
            let client = self
                .client
                .as_mut()
                .ok_or_else(|| Error::new("not connected"))?;
            match client.next_event(until - now).await {
                Ok(event) => self.handle(event).await?,
                Err(e) if e.0.starts_with(crate::client::SILENCE) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Unsubscribes from `channel`, handles what arrived before the reply, and subscribes
    /// again recovering from the position it has. Server-side subscriptions cannot be left:
    /// the connection is closed and made again, recovering every channel through connect.
    async fn churn(&mut self, channel: &str) -> Result<()> {
        if self.server_side {
            if let Some(client) = self.client.take() {
                let mut client = client;
                // What arrived before the close is handled first, in order.
                loop {
                    match client.next_event(Duration::ZERO).await {
                        Ok(event) => {
                            self.client = Some(client);
                            self.handle(event).await?;
                            client = self
                                .client
                                .take()
                                .ok_or_else(|| Error::new("not connected"))?;
                        }
                        Err(e) if e.0.starts_with(crate::client::SILENCE) => break,
                        Err(e) => return Err(e),
                    }
                }
                client.close().await;
            }
            return self.reconnect(Duration::from_secs(30)).await;
        }
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| Error::new("not connected"))?;
        client.unsubscribe_ok(channel).await?;
        loop {
            let client = self
                .client
                .as_mut()
                .ok_or_else(|| Error::new("not connected"))?;
            match client.next_event(Duration::ZERO).await {
                Ok(event) => self.handle(event).await?,
                Err(e) if e.0.starts_with(crate::client::SILENCE) => break,
                Err(e) => return Err(e),
            }
        }
        let patience = tokio::time::Instant::now() + Duration::from_secs(30);
        self.subscribe(channel, patience).await
    }

    /// One event from the server: a publication is logged, an unsubscribe is answered by
    /// subscribing again (recovering), a disconnect by reconnecting.
    async fn handle(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Ping => {}
            Event::Reply(reply) => {
                let Some(push) = reply.push else {
                    return Ok(());
                };
                let Some((log, position)) = self.logs.get_mut(&push.channel) else {
                    return Ok(());
                };
                if let Some(publication) = &push.r#pub {
                    let now = Instant::now();
                    if let Some(last) = self.last_arrival {
                        self.longest_pause = self.longest_pause.max(now - last);
                    }
                    self.last_arrival = Some(now);
                    log.push(Seen::publication(publication));
                    if let Some((offset, _)) = position {
                        *offset = publication.offset;
                    }
                } else if let Some(unsubscribe) = &push.unsubscribe {
                    log.push(Seen::Signal(unsubscribe.code));
                    let channel = push.channel.clone();
                    let patience = tokio::time::Instant::now() + Duration::from_secs(30);
                    self.subscribe(&channel, patience).await?;
                }
            }
            Event::Closed(close) => {
                self.disconnects += 1;
                for (log, _) in self.logs.values_mut() {
                    log.push(Seen::Signal(u32::from(close.code)));
                }
                self.client = None;
                self.reconnect(Duration::from_secs(30)).await?;
            }
        }
        Ok(())
    }

    /// When the last publication arrived.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    /// The logs, by channel.
    pub fn logs(&self) -> impl Iterator<Item = (&str, &[Seen])> {
        self.logs
            .iter()
            .map(|(channel, (log, _))| (channel.as_str(), log.as_slice()))
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Signals seen in all channels (unsubscribes and disconnects).
    pub fn signals(&self) -> usize {
        self.logs
            .values()
            .flat_map(|(log, _)| log)
            .filter(|s| matches!(s, Seen::Signal(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(top: u64) -> Ledger {
        let mut ledger = Ledger::default();
        for offset in 1..=top {
            ledger.published("c", "e", offset, format!("{offset}").as_bytes());
        }
        ledger
    }

    fn sub(offset: u64) -> Seen {
        Seen::Subscribed {
            offset,
            epoch: "e".into(),
            was_recovering: false,
            recovered: false,
        }
    }

    fn recovered(offset: u64, ok: bool) -> Seen {
        Seen::Subscribed {
            offset,
            epoch: "e".into(),
            was_recovering: true,
            recovered: ok,
        }
    }

    fn publication(offset: u64) -> Seen {
        Seen::Publication {
            offset,
            hash: hash_of(format!("{offset}").as_bytes()),
        }
    }

    fn verdict(top: u64, seen: &[Seen]) -> Verdict {
        judge(&ledger(top), [("a", "c", seen)])
    }

    #[test]
    fn everything_in_order_is_clean() {
        let v = verdict(3, &[sub(0), publication(1), publication(2), publication(3)]);
        assert!(v.is_clean(), "{v}");
        assert_eq!((v.publications, v.deliveries, v.signals), (3, 3, 0));
    }

    #[test]
    fn a_missing_publication_without_a_signal_is_a_silent_gap() {
        let v = verdict(3, &[sub(0), publication(1), publication(3)]);
        assert_eq!(v.silent_gaps.len(), 1, "{v}");
        let v = verdict(3, &[sub(0), publication(1), publication(2)]);
        assert_eq!(v.silent_gaps.len(), 1, "the last one never arrived: {v}");
    }

    #[test]
    fn a_signal_covers_a_gap_and_recovery_fills_it() {
        let seen = [
            sub(0),
            publication(1),
            Seen::Signal(2500),
            recovered(1, true),
            publication(2),
            publication(3),
        ];
        assert!(verdict(3, &seen).is_clean());
        let seen = [
            sub(0),
            publication(1),
            Seen::Signal(2500),
            recovered(3, false),
        ];
        let v = verdict(3, &seen);
        assert!(v.is_clean(), "{v}");
        assert_eq!(v.signals, 2);
        let seen = [sub(0), publication(1), sub(3)];
        assert_eq!(
            verdict(3, &seen).silent_gaps.len(),
            1,
            "a fresh subscribe hides 2..3"
        );
    }

    #[test]
    fn duplicates_misorders_and_altered_payloads_are_found() {
        let v = verdict(3, &[sub(0), publication(1), publication(1), publication(2)]);
        assert_eq!(v.duplicates.len(), 1);
        let v = verdict(3, &[sub(0), publication(2), publication(1), publication(3)]);
        assert_eq!(v.misorders.len(), 1);
        let seen = [sub(0), Seen::Publication { offset: 1, hash: 7 }];
        assert_eq!(verdict(1, &seen).wrong_payloads.len(), 1);
        let mut ledger = ledger(1);
        ledger.published("c", "e", 1, b"other");
        assert_eq!(judge(&ledger, []).conflicts.len(), 1);
    }
}
