//! The periodic presence refresh (docs/protocol.md §2.9): every `client.presence_update_interval`,
//! one `Up::Presence` per channel naming every local connection in its presence, so the core's
//! entries do not expire while their connections live. Joins and leaves are sent by the
//! connections themselves, when they happen.

use crate::Shared;
use spindle_mesh::{Up, mesh};

/// Refreshes until the link is gone.
pub(crate) async fn refresh(shared: &Shared) {
    let interval = shared.limits.presence_interval;
    // The first refresh at once: a new link may lead to a core that never heard of these
    // connections (its predecessor was lost).
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for (channel, members) in shared.hub.presence_members() {
            let update = mesh::PresenceUpdate {
                channel,
                refreshed_client_ids: members.clients,
                refreshed: members.infos,
                ..Default::default()
            };
            if shared.link().send(Up::Presence(update)).await.is_err() {
                return;
            }
        }
    }
}
