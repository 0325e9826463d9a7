//! `/emulation` frames (docs/protocol.md §1.6) for a session on a named node. An edge hands every
//! frame to its core; the core gives it to its own edges when it names this node, or forwards
//! it over the broker's control channel to the named node (see `cluster.rs`) and waits for that
//! node's answer, as Centrifugo does. Waiting keeps a client's frames in order: the client sends
//! its next frame only after the answer to the previous one.

use super::Node;
use spindle_mesh::mesh::survey;
use spindle_proto::client;
use std::time::Duration;

/// How long a forwarded frame waits for the named node's answer.
pub const EMULATION_TIMEOUT: Duration = Duration::from_secs(3);

/// The control channel refused the forwarded frame.
#[derive(Debug, thiserror::Error)]
#[error("emulation frame could not be forwarded over the control channel")]
pub struct EmulationError;

impl Node {
    /// Hands `request.data` to the session `request.session` of node `request.node`. `Ok(true)`
    /// once that node has handed it to the session (an unknown session drops it silently);
    /// `Ok(false)` when no live node has that uid or it did not answer within
    /// [`EMULATION_TIMEOUT`].
    pub async fn emulate(&self, request: client::EmulationRequest) -> Result<bool, EmulationError> {
        if request.node == self.inner.identity.uid {
            self.emulate_locally(request).await;
            return Ok(true);
        }
        let known = self
            .remote_nodes()
            .iter()
            .any(|node| node.uid == request.node);
        if !known || !self.inner.broker.has_control() {
            return Ok(false);
        }
        self.forward_emulation(request, EMULATION_TIMEOUT).await
    }

    /// Asks every edge of this node to hand the frame to the session; the one holding it does.
    pub(super) async fn emulate_locally(&self, request: client::EmulationRequest) {
        self.survey(survey::Kind::Emulation(request)).await;
    }
}
