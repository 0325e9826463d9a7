//! The periodic position check of positioned subscriptions (docs/protocol.md §4.2): every
//! `client.channel_position_check_delay` each one is compared with its stream top, read from
//! the core (a history read with limit 0). Behind the top is allowed once — publications may be
//! on their way — and checked again soon; still behind the top seen then, or on another epoch,
//! is a lost position (unsubscribe 2500, or disconnect 3010 for a server-side subscription).

use super::Connection;
use super::subscribe::position_only;
use crate::subscription::{LocalSub, PositionCheck};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest wait before checking a subscription found behind its stream top again.
const RECHECK_AFTER: Duration = Duration::from_secs(2);

impl Connection {
    pub(super) fn check_delay(&self) -> Duration {
        self.shared.limits.position_check_delay
    }

    /// Checks every live positioned subscription if the check is due; schedules the next.
    pub(super) async fn check_positions(&mut self, now: Instant) {
        if self.next_position_check.is_none_or(|at| at > now) {
            return;
        }
        let subs: Vec<Arc<LocalSub>> = self
            .subs
            .values()
            .filter(|s| s.flags.positioned)
            .cloned()
            .collect();
        if subs.is_empty() {
            self.next_position_check = None;
            return;
        }
        let mut behind = false;
        for sub in subs {
            if sub.position().is_none() {
                continue;
            }
            let top = match self.read_history(&sub.channel, &position_only()).await {
                Ok(read) => read.top,
                // The core cannot tell now: check again next time.
                Err(_) => continue,
            };
            match sub.check_position(top.offset, &top.epoch) {
                PositionCheck::Valid => {}
                PositionCheck::Behind => behind = true,
                PositionCheck::Lost => self.on_position_lost(&sub).await,
            }
            if self.outbox.closing().is_some() {
                return;
            }
        }
        let delay = self.check_delay();
        let wait = if behind {
            delay.min(RECHECK_AFTER)
        } else {
            delay
        };
        self.next_position_check = Some(Instant::now() + wait);
    }
}
