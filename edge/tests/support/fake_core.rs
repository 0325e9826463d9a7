//! A small core behind the in-process link: interest, publishes (with streams for the channels
//! given history), history reads, presence, join / leave events. Tests can also hold history
//! answers back (a core slow to answer) and drop events (a core that lost some on the way).

use bytes::Bytes;
use spindle_mesh::{CoreInbox, CoreLink, Down, Up, mesh};
use spindle_proto::client;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// The fake core's shared state; cheap to clone.
#[derive(Clone)]
pub struct FakeCore {
    state: Arc<Mutex<State>>,
    down: CoreLink,
    pub interest: Arc<Mutex<BTreeSet<String>>>,
}

#[derive(Default)]
struct State {
    /// Channel prefixes that keep a stream, with its size.
    history: Vec<(String, usize)>,
    streams: HashMap<String, Stream>,
    epochs: u64,
    presence: BTreeMap<String, BTreeMap<String, client::ClientInfo>>,
    /// Every presence update received, in order.
    pub presence_log: Vec<mesh::PresenceUpdate>,
    /// History answers held back while set.
    hold_history: bool,
    held: Vec<oneshot::Sender<()>>,
    /// Events not sent to the edge (lost on the way), counted down.
    drop_events: usize,
    /// History requests received.
    history_requests: Vec<mesh::HistoryRequest>,
}

struct Stream {
    epoch: String,
    top: u64,
    size: usize,
    publications: VecDeque<client::Publication>,
}

/// What a test publishes through the fake core (as the server API would).
#[derive(Default, Clone)]
pub struct Publish {
    pub data: Bytes,
    pub tags: BTreeMap<String, String>,
    pub delta: bool,
    pub info: Option<client::ClientInfo>,
}

impl FakeCore {
    /// Serves `inbox` in a task; `history` names channel prefixes with streams and their sizes.
    pub fn spawn(down: CoreLink, mut inbox: CoreInbox, history: Vec<(String, usize)>) -> FakeCore {
        let core = FakeCore {
            state: Arc::new(Mutex::new(State {
                history,
                ..State::default()
            })),
            down,
            interest: Arc::new(Mutex::new(BTreeSet::new())),
        };
        let serving = core.clone();
        tokio::spawn(async move {
            while let Some(message) = inbox.recv().await {
                match message {
                    Up::Interest(change) => {
                        {
                            let mut set = serving.interest.lock().unwrap();
                            for channel in &change.remove {
                                set.remove(channel);
                            }
                            set.extend(change.add.iter().cloned());
                        }
                        // Acknowledged with the added channels' stream tops, as a core does.
                        let positions = change
                            .add
                            .iter()
                            .filter_map(|channel| {
                                let mut state = serving.lock();
                                let stream = state.stream(channel)?;
                                Some(mesh::ChannelPosition {
                                    channel: channel.clone(),
                                    offset: stream.top,
                                    epoch: stream.epoch.clone(),
                                })
                            })
                            .collect();
                        let ack = mesh::InterestAck {
                            seq: change.seq,
                            positions,
                            failed: Vec::new(),
                        };
                        let _ = serving.down.send(Down::InterestAck(ack)).await;
                    }
                    Up::Presence(update) => serving.presence(update).await,
                    Up::Request(pending) => {
                        let serving = serving.clone();
                        // Answered in arrival order, except held history reads, which wait.
                        let id = pending.question.id;
                        let answer = serving.answer(pending.question).await;
                        match answer {
                            Answer::Now(kind, error) => {
                                pending.responder.answer(mesh::Response { id, error, kind })
                            }
                            Answer::Published(kind, event) => {
                                pending.responder.answer(mesh::Response {
                                    id,
                                    error: None,
                                    kind,
                                });
                                if let Some(event) = event {
                                    serving.send_event(*event).await;
                                }
                            }
                            Answer::Held(release, kind) => {
                                tokio::spawn(async move {
                                    let _ = release.await;
                                    pending.responder.answer(mesh::Response {
                                        id,
                                        error: None,
                                        kind,
                                    });
                                });
                            }
                        }
                    }
                }
            }
        });
        core
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Holds history answers back until [`FakeCore::release_history`].
    pub fn hold_history(&self) {
        self.lock().hold_history = true;
    }

    pub fn release_history(&self) {
        let mut state = self.lock();
        state.hold_history = false;
        for release in state.held.drain(..) {
            let _ = release.send(());
        }
    }

    /// History reads waiting for [`FakeCore::release_history`].
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }

    pub fn history_requests(&self) -> Vec<mesh::HistoryRequest> {
        self.lock().history_requests.clone()
    }

    /// The next `n` events are not sent to the edge.
    pub fn drop_events(&self, n: usize) {
        self.lock().drop_events = n;
    }

    pub fn presence_log(&self) -> Vec<mesh::PresenceUpdate> {
        self.lock().presence_log.clone()
    }

    /// The stream top of `channel`: (offset, epoch).
    pub fn top(&self, channel: &str) -> (u64, String) {
        let mut state = self.lock();
        match state.stream(channel) {
            Some(stream) => (stream.top, stream.epoch.clone()),
            None => (0, String::new()),
        }
    }

    /// Publishes as the server API does: into the stream (if any), then to the edge.
    pub async fn publish(&self, channel: &str, publish: Publish) -> (u64, String) {
        let (event, position) = self.append(channel, publish);
        if let Some(event) = event {
            self.down
                .send_event(spindle_mesh::SharedEvent::new(event))
                .await
                .unwrap();
        }
        position
    }

    /// Into the stream; the event for the edge unless dropped or nobody is interested.
    fn append(
        &self,
        channel: &str,
        publish: Publish,
    ) -> (Option<mesh::ChannelEvent>, (u64, String)) {
        {
            let mut state = self.lock();
            let mut publication = client::Publication {
                data: publish.data.clone(),
                tags: publish.tags.clone(),
                info: publish.info.clone(),
                ..Default::default()
            };
            let mut epoch = String::new();
            let mut prev_data = Bytes::new();
            if let Some(stream) = state.stream(channel) {
                if publish.delta {
                    prev_data = stream
                        .publications
                        .back()
                        .filter(|p| p.offset == stream.top)
                        .map(|p| p.data.clone())
                        .unwrap_or_default();
                }
                stream.top += 1;
                publication.offset = stream.top;
                if stream.top == 1 {
                    publication.epoch = stream.epoch.clone();
                }
                stream.publications.push_back(publication.clone());
                while stream.publications.len() > stream.size {
                    stream.publications.pop_front();
                }
                epoch = stream.epoch.clone();
            }
            let position = (publication.offset, epoch.clone());
            let interested = self.interest.lock().unwrap().contains(channel);
            let dropped = state.drop_events > 0;
            if dropped {
                state.drop_events -= 1;
            }
            let event = (interested && !dropped).then(|| mesh::ChannelEvent {
                channel: channel.to_owned(),
                kind: Some(mesh::channel_event::Kind::Publication(publication)),
                epoch,
                prev_data,
                prev_version: 0,
                client: String::new(),
            });
            (event, position)
        }
    }

    /// Sends an event to the edge as it is.
    pub async fn send_event(&self, event: mesh::ChannelEvent) {
        self.down
            .send_event(spindle_mesh::SharedEvent::new(event))
            .await
            .unwrap();
    }

    async fn presence(&self, update: mesh::PresenceUpdate) {
        let mut events = Vec::new();
        {
            let mut state = self.lock();
            state.presence_log.push(update.clone());
            let members = state.presence.entry(update.channel.clone()).or_default();
            for info in &update.joined {
                members.insert(info.client.clone(), info.clone());
                if update.emit_join_leave {
                    events.push(mesh::channel_event::Kind::Join(info.clone()));
                }
            }
            if update.emit_join_leave {
                for info in &update.announced {
                    events.push(mesh::channel_event::Kind::Join(info.clone()));
                }
            }
            for info in &update.left {
                members.remove(&info.client);
                if update.emit_join_leave {
                    events.push(mesh::channel_event::Kind::Leave(info.clone()));
                }
            }
            for client in &update.left_client_ids {
                if let Some(info) = members.remove(client)
                    && update.emit_join_leave
                {
                    events.push(mesh::channel_event::Kind::Leave(info));
                }
            }
        }
        let interested = self.interest.lock().unwrap().contains(&update.channel);
        for kind in events {
            if interested {
                let event = mesh::ChannelEvent {
                    channel: update.channel.clone(),
                    kind: Some(kind),
                    ..Default::default()
                };
                let _ = self
                    .down
                    .send_event(spindle_mesh::SharedEvent::new(event))
                    .await;
            }
        }
    }

    async fn answer(&self, request: mesh::Request) -> Answer {
        use mesh::request::Kind;
        use mesh::response::Kind as Reply;
        match request.kind {
            Some(Kind::Publish(publish)) => {
                let (event, (offset, epoch)) = self.append(
                    &publish.channel,
                    Publish {
                        data: publish.data,
                        tags: publish.tags,
                        delta: publish.delta,
                        info: publish.info,
                    },
                );
                Answer::Published(
                    Some(Reply::Publish(mesh::PublishResult { offset, epoch })),
                    event.map(Box::new),
                )
            }
            Some(Kind::History(read)) => {
                let mut state = self.lock();
                state.history_requests.push(read.clone());
                let Some(result) = state.read(&read) else {
                    return Answer::Now(None, Some(error(108, "not available")));
                };
                let result = match result {
                    Ok(result) => result,
                    Err(code) => return Answer::Now(None, Some(error(code, "history"))),
                };
                let kind = Some(Reply::History(result));
                if state.hold_history {
                    let (tx, rx) = oneshot::channel();
                    state.held.push(tx);
                    return Answer::Held(rx, kind);
                }
                Answer::Now(kind, None)
            }
            Some(Kind::PresenceUpdate(update)) => {
                self.presence(update).await;
                Answer::Now(Some(Reply::Empty(mesh::Empty {})), None)
            }
            Some(Kind::Presence(question)) => {
                let state = self.lock();
                let presence = state
                    .presence
                    .get(&question.channel)
                    .map(|members| {
                        members
                            .iter()
                            .map(|(client, info)| (client.clone(), info.clone()).into())
                            .collect()
                    })
                    .unwrap_or_default();
                Answer::Now(
                    Some(Reply::Presence(client::PresenceResult { presence })),
                    None,
                )
            }
            Some(Kind::PresenceStats(question)) => {
                let state = self.lock();
                let members = state.presence.get(&question.channel);
                let num_clients = members.map_or(0, BTreeMap::len) as u32;
                let num_users = members.map_or(0, |m| {
                    m.values()
                        .map(|i| i.user.as_str())
                        .collect::<BTreeSet<_>>()
                        .len()
                }) as u32;
                Answer::Now(
                    Some(Reply::PresenceStats(client::PresenceStatsResult {
                        num_clients,
                        num_users,
                    })),
                    None,
                )
            }
            _ => Answer::Now(None, Some(error(108, "not available"))),
        }
    }
}

enum Answer {
    Now(Option<mesh::response::Kind>, Option<client::Error>),
    /// Answered, then the event goes to the edge (as a core answers before fan-out).
    Published(
        Option<mesh::response::Kind>,
        Option<Box<mesh::ChannelEvent>>,
    ),
    Held(oneshot::Receiver<()>, Option<mesh::response::Kind>),
}

fn error(code: u32, message: &str) -> client::Error {
    client::Error {
        code,
        message: message.into(),
        temporary: false,
    }
}

impl State {
    fn stream(&mut self, channel: &str) -> Option<&mut Stream> {
        let size = self
            .history
            .iter()
            .find(|(prefix, _)| channel.starts_with(prefix.as_str()))
            .map(|(_, size)| *size)?;
        if !self.streams.contains_key(channel) {
            self.epochs += 1;
            let epoch = format!("epoch{}", self.epochs);
            self.streams.insert(
                channel.to_owned(),
                Stream {
                    epoch,
                    top: 0,
                    size,
                    publications: VecDeque::new(),
                },
            );
        }
        self.streams.get_mut(channel)
    }

    /// `None`: no history in this channel; `Err(code)`: a refused read.
    fn read(&mut self, read: &mesh::HistoryRequest) -> Option<Result<client::HistoryResult, u32>> {
        let stream = self.stream(&read.channel)?;
        if let Some(since) = &read.since
            && !since.epoch.is_empty()
            && since.epoch != stream.epoch
        {
            return Some(Err(112));
        }
        let mut publications: Vec<client::Publication> = match (&read.since, read.reverse) {
            (Some(since), false) => stream
                .publications
                .iter()
                .filter(|p| p.offset > since.offset)
                .cloned()
                .collect(),
            (Some(since), true) => stream
                .publications
                .iter()
                .rev()
                .filter(|p| p.offset < since.offset)
                .cloned()
                .collect(),
            (None, false) => stream.publications.iter().cloned().collect(),
            (None, true) => stream.publications.iter().rev().cloned().collect(),
        };
        if let Ok(limit) = usize::try_from(read.limit) {
            publications.truncate(limit);
        }
        Some(Ok(client::HistoryResult {
            publications,
            epoch: stream.epoch.clone(),
            offset: stream.top,
        }))
    }
}
