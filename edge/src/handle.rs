//! Cheap handles to a live connection, held by the local hub for fan-out and control.

use crate::subscription::LocalSub;
use crate::writer::{Outbox, Pushed};
use bytes::Bytes;
use spindle_hub::codes::Disconnect;
use spindle_mesh::mesh;
use spindle_proto::Format;
use std::fmt;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A connection id (a UUIDv4 made by the edge), shared cheaply.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

impl ClientId {
    /// A fresh random id.
    pub fn generate() -> Self {
        ClientId(Arc::from(uuid::Uuid::new_v4().to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ClientId {
    fn from(id: &str) -> Self {
        ClientId(Arc::from(id))
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many control commands may wait for one connection's task.
pub(crate) const MAILBOX_CAPACITY: usize = 32;

/// What other tasks hand to a connection's task.
#[derive(Debug)]
pub(crate) enum Mail {
    /// An API command (matched against the session by the task). Boxed: the channel allocates
    /// a block of slots per connection up front, so every variant must stay small.
    Control(Box<mesh::Control>),
    /// A subscription of this connection lost its position in the stream (docs/protocol.md §4.2).
    PositionLost(Arc<LocalSub>),
    /// A command frame sent through `/emulation` for this (HTTP-stream or SSE) connection.
    Frame(Bytes),
}

/// What other tasks may do to a connection: queue bytes, close it, hand it a control command.
#[derive(Clone, Debug)]
pub struct ConnectionHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: ClientId,
    outbox: Arc<Outbox>,
    mailbox: mpsc::Sender<Mail>,
}

impl ConnectionHandle {
    pub(crate) fn new(client: ClientId, outbox: Arc<Outbox>, mailbox: mpsc::Sender<Mail>) -> Self {
        ConnectionHandle {
            inner: Arc::new(Inner {
                client,
                outbox,
                mailbox,
            }),
        }
    }

    pub fn client(&self) -> &ClientId {
        &self.inner.client
    }

    pub fn format(&self) -> Format {
        self.inner.outbox.format()
    }

    /// Queues an encoded message; never waits (overflow closes the connection with 3008).
    pub fn push(&self, message: Bytes) -> Pushed {
        self.inner.outbox.push(message)
    }

    pub fn close(&self, disconnect: Disconnect) {
        self.inner.outbox.close(disconnect);
    }

    /// Hands a control command to the connection's task. A full mailbox means the task is
    /// stuck; a disconnect is then applied directly, anything else is dropped and logged.
    pub(crate) fn deliver(&self, control: mesh::Control) {
        if let Err(error) = self
            .inner
            .mailbox
            .try_send(Mail::Control(Box::new(control)))
        {
            let control = match error {
                mpsc::error::TrySendError::Full(Mail::Control(control)) => *control,
                // The task is gone; so is the connection.
                _ => return,
            };
            // Without the session only user and client were checked (by the local hub), so a
            // command naming a session is not applied here.
            if let Some(mesh::control::Kind::Disconnect(command)) = &control.kind
                && control.session.is_empty()
            {
                self.close(crate::control::disconnect_of(command));
            } else {
                tracing::warn!(client = %self.client(), "control mailbox full, command dropped");
            }
        }
    }
}

impl ConnectionHandle {
    /// Hands a command frame from `/emulation` to the connection's task, in order; waits
    /// while its mailbox is full. False when the task is gone.
    pub(crate) async fn emulate(&self, frame: Bytes) -> bool {
        self.inner.mailbox.send(Mail::Frame(frame)).await.is_ok()
    }

    /// One of this connection's subscriptions lost its position. A server-side one closes the
    /// connection with 3010 at once; a client-side one is unsubscribed (2500) by the task, or,
    /// when its mailbox is full, the connection is closed with 3010 too (never a silent gap).
    pub(crate) fn position_lost(&self, sub: Arc<LocalSub>) {
        if sub.flags.server_side {
            self.close(Disconnect::INSUFFICIENT_STATE);
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.inner.mailbox.try_send(Mail::PositionLost(sub))
        {
            self.close(Disconnect::INSUFFICIENT_STATE);
        }
    }
}
