//! The edge's interest set, as its core must know it (docs/architecture.md, "The link
//! contract").
//!
//! The local hub says which channels have local subscribers; this table tells the core, and
//! knows when the core has acted on it. Connection tasks only *touch* a channel when it gains
//! its first or loses its last local subscriber; one task per link ([`run`]) reads the hub for
//! every touched channel and sends what changed as one numbered `Up::Interest` (set semantics:
//! "I have subscribers in C" / "I have none"), in order on the control stream. The core answers
//! each with an `InterestAck` of the same number once publications of the added channels flow,
//! carrying their stream positions. A subscribe waits for its channel to be *ready* (acked)
//! before it reads history or answers the client, so no publication can fall between the
//! history read and the live stream — whatever order the link delivers other messages in.
//!
//! Because only the sending task compares the hub with what the core was told, racing
//! subscribes and unsubscribes of one channel can never leave the core with a stale entry: the
//! last message about a channel always matches the hub at the time it was sent, and a touch
//! after it makes the task look again.

use crate::local_hub::LocalHub;
use crate::streams::Streams;
use spindle_hub::history::StreamPosition;
use spindle_mesh::{EdgeLink, LinkError, Up, mesh};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Notify;

/// Why a channel's interest is not ready.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InterestError {
    /// The link to the core is gone.
    #[error("mesh link closed")]
    Closed,
    /// The core did not acknowledge within the deadline.
    #[error("interest not acknowledged within {0:?}")]
    Timeout(Duration),
    /// The core could not start delivering the channel (its broker refused).
    #[error("the core could not start delivering the channel")]
    Failed,
}

/// Channels an acknowledgement settled.
#[derive(Debug, Default)]
pub(crate) struct Acked {
    /// In effect, with the channel's stream top (`None`: no history).
    pub ready: Vec<(String, Option<StreamPosition>)>,
    /// Refused by the core: their subscribers get nothing until asked again.
    pub failed: Vec<String>,
}

/// What the core knows of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    /// Added in change `seq`, not acknowledged yet.
    Added(u64),
    /// In effect; the channel's position when the core acknowledged (`None` without history).
    Ready(Option<StreamPosition>),
    /// The core could not take it: its waiters fail; the next change about the channel adds it
    /// again if it still has subscribers (the core does not hold it).
    Failed,
}

#[derive(Debug, Default)]
struct State {
    /// Channels the core has been told to add (and not told to remove since).
    told: HashMap<String, Told>,
    /// Channels whose local subscribers changed since the task last looked.
    touched: BTreeSet<String>,
    /// The number of the last change sent.
    seq: u64,
    /// The link is gone: nothing will be acknowledged any more.
    closed: bool,
    /// A new link: the next change is the whole set, as one snapshot.
    snapshot: bool,
}

/// The interest table of one link.
#[derive(Debug, Default)]
pub(crate) struct InterestTable {
    state: Mutex<State>,
    /// Wakes the sending task: a channel was touched.
    touched: Notify,
    /// Wakes waiters: an acknowledgement arrived, or the link closed.
    acked: Notify,
}

impl InterestTable {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // No invariant spans a panic point inside the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `channel` gained its first or lost its last local subscriber: the sending task will
    /// tell the core whatever the hub says by the time it looks.
    pub(crate) fn touch(&self, channel: &str) {
        self.state().touched.insert(channel.to_owned());
        self.touched.notify_one();
    }

    /// Waits until the core has acknowledged interest in `channel` (at once when it already
    /// has); returns the channel's position at that acknowledgement. Call after the channel's
    /// subscriber is in the local hub (and the channel touched, if it was the first).
    pub(crate) async fn ready(
        &self,
        channel: &str,
        deadline: Duration,
    ) -> Result<Option<StreamPosition>, InterestError> {
        let wait = async {
            loop {
                let acked = self.acked.notified();
                let mut acked = std::pin::pin!(acked);
                // Registered before looking, so an ack between the look and the wait wakes us.
                acked.as_mut().enable();
                {
                    let mut state = self.state();
                    match state.told.get(channel) {
                        Some(Told::Ready(position)) => return Ok(position.clone()),
                        Some(Told::Failed) => {
                            // The next change asks the core again (if the channel still has
                            // subscribers by then).
                            if state.touched.insert(channel.to_owned()) {
                                self.touched.notify_one();
                            }
                            return Err(InterestError::Failed);
                        }
                        Some(Told::Added(_)) => {}
                        // Neither told nor about to be (a subscriber that was not the first,
                        // on a link that is new): make sure the task looks at it.
                        None => {
                            if state.touched.insert(channel.to_owned()) {
                                self.touched.notify_one();
                            }
                        }
                    }
                    if state.closed {
                        return Err(InterestError::Closed);
                    }
                }
                acked.await;
            }
        };
        tokio::time::timeout(deadline, wait)
            .await
            .unwrap_or(Err(InterestError::Timeout(deadline)))
    }

    /// The core acknowledged change `ack.seq`: the channels added by it (and by any earlier
    /// change, whose acks came before on the same ordered stream) are ready, with their
    /// stream tops (`None`: no history), or failed (the core could not deliver them).
    pub(crate) fn acknowledged(&self, ack: mesh::InterestAck) -> Acked {
        let mut positions: HashMap<String, StreamPosition> = ack
            .positions
            .into_iter()
            .map(|p| {
                let position = StreamPosition {
                    offset: p.offset,
                    epoch: p.epoch,
                };
                (p.channel, position)
            })
            .collect();
        let mut ready = Vec::new();
        let mut failed = Vec::new();
        {
            let mut state = self.state();
            for (channel, told) in state.told.iter_mut() {
                if let Told::Added(seq) = told
                    && *seq <= ack.seq
                {
                    *told = if ack.failed.contains(channel) {
                        failed.push(channel.clone());
                        Told::Failed
                    } else {
                        let position = positions.remove(channel);
                        ready.push((channel.clone(), position.clone()));
                        Told::Ready(position)
                    };
                }
            }
        }
        self.acked.notify_waiters();
        Acked { ready, failed }
    }

    /// The link is gone: waiters fail, and nothing is considered told any more (a new link
    /// starts from a snapshot).
    pub(crate) fn close(&self) {
        {
            let mut state = self.state();
            state.closed = true;
            state.told.clear();
        }
        self.acked.notify_waiters();
    }

    /// A new link starts: nothing is told yet, waiters may wait again, and the first change
    /// is a snapshot of every channel that has local subscribers by then (numbered like any
    /// change: its number is the snapshot's generation), so the new core holds exactly the
    /// edge's set even if no subscriber comes or goes there again.
    pub(crate) fn reopen(&self, hub: &LocalHub) {
        {
            let mut state = self.state();
            state.closed = false;
            state.told.clear();
            state.snapshot = true;
            state.touched.extend(hub.channel_counts("").into_keys());
        }
        self.touched.notify_one();
    }

    /// The change to send for the touched channels, as the hub has them now; `None` when
    /// nothing changed. Marks added channels as told (not yet acknowledged) and forgets
    /// removed ones.
    fn next_change(&self, hub: &LocalHub) -> Option<mesh::Interest> {
        let mut state = self.state();
        let touched = std::mem::take(&mut state.touched);
        if std::mem::take(&mut state.snapshot) {
            // The whole set: what the hub has now (touched channels without subscribers are
            // simply not in it).
            let add: Vec<String> = hub.channel_counts("").into_keys().collect();
            state.seq += 1;
            let seq = state.seq;
            state.told = add
                .iter()
                .map(|channel| (channel.clone(), Told::Added(seq)))
                .collect();
            return Some(mesh::Interest {
                add,
                remove: Vec::new(),
                seq,
                snapshot: true,
            });
        }
        let mut add = Vec::new();
        let mut remove = Vec::new();
        for channel in touched {
            let wanted = hub.has_subscribers(&channel);
            // A failed add is not held by the core: as if never told.
            if state.told.get(&channel) == Some(&Told::Failed) {
                state.told.remove(&channel);
            }
            let told = state.told.contains_key(&channel);
            if wanted && !told {
                add.push(channel);
            } else if !wanted && told {
                state.told.remove(&channel);
                remove.push(channel);
            }
        }
        if add.is_empty() && remove.is_empty() {
            return None;
        }
        state.seq += 1;
        let seq = state.seq;
        for channel in &add {
            state.told.insert(channel.clone(), Told::Added(seq));
        }
        Some(mesh::Interest {
            add,
            remove,
            seq,
            snapshot: false,
        })
    }
}

/// Sends the interest changes of one link, in order, until the link closes. Changes made
/// while one is being sent go out together in the next.
/// A channel the core is told to drop is forgotten by the stream table too.
pub(crate) async fn run(
    table: &InterestTable,
    hub: &LocalHub,
    streams: &Streams,
    link: &EdgeLink,
) -> LinkError {
    loop {
        let touched = table.touched.notified();
        let mut touched = std::pin::pin!(touched);
        touched.as_mut().enable();
        while let Some(change) = table.next_change(hub) {
            for channel in &change.remove {
                streams.forget(channel);
            }
            if change.snapshot {
                // Channels that lost their subscribers while no core was linked.
                streams.forget_unsubscribed(|channel| hub.has_subscribers(channel));
            }
            if let Err(error) = link.send(Up::Interest(change)).await {
                return error;
            }
        }
        touched.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::{ClientId, ConnectionHandle};
    use crate::subscription::{BufferLimits, LocalSub, SubFlags};
    use crate::writer::Outbox;
    use spindle_proto::Format;
    use std::sync::Arc;

    fn subscriber(hub: &LocalHub, channel: &str, client: &str) {
        let (mailbox, _rx) = tokio::sync::mpsc::channel(1);
        let outbox = Arc::new(Outbox::new(Format::Json, 1 << 20));
        let handle = ConnectionHandle::new(ClientId::from(client), outbox, mailbox);
        let sub = LocalSub::new(
            channel.to_owned(),
            handle,
            SubFlags::default(),
            None,
            BufferLimits {
                publications: 16,
                bytes: 1 << 20,
            },
        );
        hub.subscribe(channel, sub);
    }

    fn ack(seq: u64, positions: &[(&str, u64, &str)]) -> mesh::InterestAck {
        mesh::InterestAck {
            seq,
            positions: positions
                .iter()
                .map(|(channel, offset, epoch)| mesh::ChannelPosition {
                    channel: channel.to_string(),
                    offset: *offset,
                    epoch: epoch.to_string(),
                })
                .collect(),
            failed: Vec::new(),
        }
    }

    #[test]
    fn changes_follow_the_hub_not_the_touches() {
        let table = InterestTable::default();
        let hub = LocalHub::new();
        subscriber(&hub, "a", "c1");
        table.touch("a");
        table.touch("b"); // touched, but no subscriber: nothing to say
        let first = table.next_change(&hub).unwrap();
        assert_eq!(
            (first.add, first.remove, first.seq),
            (vec!["a".into()], vec![], 1)
        );
        // Touched again while the hub still has it: already told.
        table.touch("a");
        assert_eq!(table.next_change(&hub), None);
        // The last subscriber left and another came back before the task looked: nothing.
        hub.unsubscribe("a", &ClientId::from("c1"));
        subscriber(&hub, "a", "c2");
        table.touch("a");
        table.touch("a");
        assert_eq!(table.next_change(&hub), None);
        hub.unsubscribe("a", &ClientId::from("c2"));
        table.touch("a");
        let second = table.next_change(&hub).unwrap();
        assert_eq!(
            (second.add, second.remove, second.seq),
            (vec![], vec!["a".into()], 2)
        );
    }

    #[tokio::test]
    async fn ready_waits_for_the_ack_of_the_change_that_added_the_channel() {
        let table = InterestTable::default();
        let hub = LocalHub::new();
        subscriber(&hub, "a", "c1");
        subscriber(&hub, "b", "c1");
        table.touch("a");
        let first = table.next_change(&hub).unwrap();
        table.touch("b");
        let second = table.next_change(&hub).unwrap();
        let short = Duration::from_millis(30);
        assert_eq!(
            table.ready("a", short).await,
            Err(InterestError::Timeout(short))
        );
        table.acknowledged(ack(first.seq, &[("a", 7, "e")]));
        let position = table.ready("a", short).await.unwrap().unwrap();
        assert_eq!((position.offset, position.epoch.as_str()), (7, "e"));
        assert!(
            table.ready("b", short).await.is_err(),
            "b's change is not acked"
        );
        // A later ack covers earlier changes too; a channel without history has no position.
        table.acknowledged(ack(second.seq, &[]));
        assert_eq!(table.ready("b", short).await, Ok(None));
    }

    #[tokio::test]
    async fn a_waiter_is_woken_by_the_ack_and_fails_when_the_link_closes() {
        let table = Arc::new(InterestTable::default());
        let hub = LocalHub::new();
        subscriber(&hub, "a", "c1");
        table.touch("a");
        let change = table.next_change(&hub).unwrap();
        let waiter = {
            let table = Arc::clone(&table);
            tokio::spawn(async move { table.ready("a", Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        table.acknowledged(ack(change.seq, &[]));
        assert_eq!(waiter.await.unwrap(), Ok(None));

        subscriber(&hub, "b", "c1");
        table.touch("b");
        table.next_change(&hub).unwrap();
        let waiter = {
            let table = Arc::clone(&table);
            tokio::spawn(async move { table.ready("b", Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        table.close();
        assert_eq!(waiter.await.unwrap(), Err(InterestError::Closed));
    }

    #[tokio::test]
    async fn a_new_link_hears_of_every_channel_that_still_has_subscribers() {
        // Subscribers that outlive a link (or subscribe while it is replaced) are not the first
        // in their channel: nothing would touch it again.
        let table = InterestTable::default();
        let hub = LocalHub::new();
        subscriber(&hub, "a", "c1");
        table.touch("a");
        let first = table.next_change(&hub).unwrap();
        table.acknowledged(ack(first.seq, &[]));
        table.close();
        subscriber(&hub, "a", "c2");
        table.reopen(&hub);
        let change = table.next_change(&hub).expect("the new link is told of a");
        assert_eq!(change.add, ["a"]);

        // And a subscriber waiting for a channel nobody touched makes the task look at it.
        let table = Arc::new(InterestTable::default());
        let waiter = {
            let table = Arc::clone(&table);
            tokio::spawn(async move { table.ready("a", Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        let change = table.next_change(&hub).expect("a touched by the waiter");
        assert_eq!(change.add, ["a"]);
        table.acknowledged(ack(change.seq, &[]));
        assert_eq!(waiter.await.unwrap(), Ok(None));
    }

    #[tokio::test]
    async fn a_channel_the_core_could_not_take_fails_its_waiters_and_is_asked_again() {
        let table = InterestTable::default();
        let hub = LocalHub::new();
        subscriber(&hub, "a", "c1");
        table.touch("a");
        let change = table.next_change(&hub).unwrap();
        let mut refused = ack(change.seq, &[]);
        refused.failed = vec!["a".into()];
        table.acknowledged(refused);
        let short = Duration::from_millis(30);
        assert_eq!(table.ready("a", short).await, Err(InterestError::Failed));
        // The next touch with subscribers left adds it again; without, nothing is removed.
        table.touch("a");
        let again = table.next_change(&hub).expect("asked again");
        assert_eq!(again.add, ["a"]);
        let mut refused = ack(again.seq, &[]);
        refused.failed = vec!["a".into()];
        table.acknowledged(refused);
        hub.unsubscribe("a", &ClientId::from("c1"));
        table.touch("a");
        assert_eq!(table.next_change(&hub), None, "the core does not hold it");
    }
}
