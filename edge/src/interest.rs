//! Telling the core which channels this edge needs (`Up::Interest`).
//!
//! The registry reports the first subscriber of a channel arriving and the last one leaving;
//! the connection task that saw the change sends it. Two tasks can race (one leaves the last
//! while another joins the first) and their messages can arrive in either order, so after each
//! send the sender looks at the registry again and corrects the core when the state moved on.
//! The last message sent for a channel then always matches the registry; the core must treat
//! adds and removes as set operations (a repeated add or remove is harmless).

use crate::local_hub::LocalHub;
use spindle_mesh::{EdgeLink, LinkError, Up, mesh};

/// Rounds of correction one caller does before leaving the rest to the tasks causing the churn.
const MAX_ROUNDS: usize = 8;

/// Announces `add` / `remove` and keeps correcting until the registry agrees with what was sent.
/// Returns once the messages are on the link (so a reply sent afterwards cannot overtake them).
pub(crate) async fn sync(
    link: &EdgeLink,
    hub: &LocalHub,
    mut add: Vec<String>,
    mut remove: Vec<String>,
) -> Result<(), LinkError> {
    for _ in 0..MAX_ROUNDS {
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let interest = mesh::Interest {
            add: add.clone(),
            remove: remove.clone(),
        };
        link.send(Up::Interest(interest)).await?;
        let mut next_add = Vec::new();
        let mut next_remove = Vec::new();
        for channel in add {
            if !hub.has_subscribers(&channel) {
                next_remove.push(channel);
            }
        }
        for channel in remove {
            if hub.has_subscribers(&channel) {
                next_add.push(channel);
            }
        }
        add = next_add;
        remove = next_remove;
    }
    Ok(())
}
