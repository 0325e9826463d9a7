//! The node's periodic expiry pass over history, presence and map keys: one task per node, not one per
//! channel. Expiry is also applied lazily on every access, so the sweep only frees memory of
//! what nobody touches; its cadence never changes an answer.

use super::{Inner, Node};
use crate::maps::{AnyMapBroker, MapSettings};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// How often the sweep runs.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// What one sweep removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepReport {
    /// Streams whose retained publications expired (position kept).
    pub history_windows: usize,
    /// Streams forgotten (metadata expired).
    pub streams: usize,
    /// Idempotency keys forgotten.
    pub idempotency_keys: usize,
    /// Presence entries expired.
    pub presence_entries: usize,
    /// Map keys expired (each delivered as a removal).
    pub map_keys: usize,
}

impl Node {
    /// Applies every history and presence deadline passed by now. The node's sweep task calls
    /// this every [`SWEEP_INTERVAL`].
    pub fn sweep(&self) -> SweepReport {
        let history = self.inner.broker.sweep();
        SweepReport {
            history_windows: history.windows,
            streams: history.streams,
            idempotency_keys: history.idempotency_keys,
            presence_entries: self.inner.presence.sweep(),
            map_keys: match &self.inner.maps {
                AnyMapBroker::Memory(maps) => maps.sweep(),
                // Swept by the sweep task, with their round trips (`sweep_loop`).
                AnyMapBroker::Redis(_) | AnyMapBroker::Postgres(_) => 0,
            },
        }
    }

    /// Starts the sweep task once, when a Tokio runtime is at hand. The task holds the node
    /// weakly: it ends after the last clone of the node is dropped.
    pub(crate) fn start_sweeping(&self) {
        if tokio::runtime::Handle::try_current().is_err()
            || self.inner.sweeping.swap(true, Ordering::AcqRel)
        {
            return;
        }
        tokio::spawn(sweep_loop(Arc::downgrade(&self.inner)));
    }
}

async fn sweep_loop(node: Weak<Inner>) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = node.upgrade() else {
            break;
        };
        let removed = match &inner.maps {
            AnyMapBroker::Redis(maps) => {
                let resolver = &inner.resolver;
                let settings = |channel: &str| {
                    let resolved = resolver.resolve(channel).ok()?;
                    MapSettings::for_channel(resolved.options)
                };
                maps.sweep(settings).await
            }
            AnyMapBroker::Postgres(maps) => maps.sweep().await,
            AnyMapBroker::Memory(_) => 0,
        };
        if removed > 0 {
            tracing::trace!(removed, "map keys expired");
        }
        let report = Node { inner }.sweep();
        if report != SweepReport::default() {
            tracing::trace!(?report, "expiry sweep");
        }
    }
}
