//! The recovery decision (docs/protocol.md §4.3 stream mode, §4.4 cache mode) as a pure function of
//! the client's last position and one history read.
//!
//! How the edge uses it, for a subscribe with `recover`:
//! 1. Start buffering live publications of the channel.
//! 2. Ask the core for history with [`stream_recovery_query`] (stream mode: everything after
//!    the client's offset, up to `recovery_max_publication_limit`, with an **empty** `since`
//!    epoch so that an epoch change comes back as data instead of error 112) or
//!    [`cache_recovery_query`] (cache mode: the latest publication).
//! 3. Call [`recover`] with the answer (`mesh::Response.history`, converted with
//!    `HistoryResult::from`), then merge the buffered live publications (dedupe by offset).
//! 4. Reply `was_recovering: true`, `recovered`, `epoch`, `offset` and `publications` from the
//!    [`Recovery`].

use super::{HistoryItem, HistoryQuery, HistoryResult, StreamPosition};
use crate::config::RecoveryMode;
use spindle_proto::client;

/// Anything carrying a stream offset: [`HistoryItem`] in the core, `client::Publication` at the
/// edge.
pub trait Offset {
    fn offset(&self) -> u64;
}

impl Offset for HistoryItem {
    fn offset(&self) -> u64 {
        self.offset
    }
}

impl Offset for client::Publication {
    fn offset(&self) -> u64 {
        self.offset
    }
}

/// The outcome of a recovery attempt, in the terms of `SubscribeResult`.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery<P> {
    /// `SubscribeResult.recovered`.
    pub recovered: bool,
    /// `SubscribeResult.publications`: what the client missed (stream mode, oldest first) or
    /// the latest publication (cache mode); empty when not recovered.
    pub publications: Vec<P>,
    /// `SubscribeResult.epoch`: the stream's current epoch.
    pub epoch: String,
    /// `SubscribeResult.offset`: stream mode recovered → the client's own offset (the SDK
    /// advances it as it applies the publications); otherwise the stream top — which is also
    /// the position the edge tracks for the subscription from here (stream mode recovered:
    /// the last publication's offset, i.e. the top).
    ///
    /// Cache mode recovered: Centrifugo writes the client's offset here as in stream mode; we
    /// write the top, the position the edge tracks. The SDKs end at the same offset either way
    /// (they take each applied publication's offset, and the latest publication is the top).
    pub offset: u64,
}

/// The history read for a stream-mode recovery from `client`: publications after its offset,
/// oldest first, at most `limit` (`recovery_max_publication_limit`). The epoch is left empty on
/// purpose: [`recover`] compares it, so an epoch change does not fail the read.
pub fn stream_recovery_query(client: &StreamPosition, limit: usize) -> HistoryQuery {
    HistoryQuery {
        since: Some(StreamPosition {
            offset: client.offset,
            epoch: String::new(),
        }),
        limit: Some(limit),
        reverse: false,
    }
}

/// The history read for a cache-mode recovery: the latest retained publication.
pub fn cache_recovery_query() -> HistoryQuery {
    HistoryQuery {
        since: None,
        limit: Some(1),
        reverse: true,
    }
}

/// Decides a recovery from the client's last position and the read made with
/// [`stream_recovery_query`] or [`cache_recovery_query`].
///
/// Stream mode (§4.3): not recovered when the client's epoch is non-empty and not the stream's;
/// with no publications returned, recovered iff the client is at the top; otherwise recovered
/// iff the publications run without a gap from `client.offset + 1` to the top (so a gap longer
/// than the read's limit is not recovered).
///
/// Cache mode (§4.4): recovered with nothing to send when the client is at the top (`> 0`) of
/// the same epoch; else recovered with the latest publication when one is retained; else not
/// recovered.
pub fn recover<P: Offset>(
    mode: RecoveryMode,
    client: &StreamPosition,
    history: HistoryResult<P>,
) -> Recovery<P> {
    match mode {
        RecoveryMode::Stream => recover_stream(client, history),
        RecoveryMode::Cache => recover_cache(client, history),
    }
}

fn recover_stream<P: Offset>(client: &StreamPosition, history: HistoryResult<P>) -> Recovery<P> {
    let HistoryResult { top, publications } = history;
    let same_epoch = client.epoch.is_empty() || client.epoch == top.epoch;
    let recovered = same_epoch
        && match (publications.first(), publications.last()) {
            (Some(first), Some(last)) => {
                let expected = top.offset.saturating_sub(client.offset);
                Some(first.offset()) == client.offset.checked_add(1)
                    && last.offset() == top.offset
                    && publications.len() as u64 == expected
                    && publications
                        .windows(2)
                        .all(|w| w[0].offset() + 1 == w[1].offset())
            }
            _ => client.offset == top.offset,
        };
    if recovered {
        Recovery {
            recovered: true,
            publications,
            epoch: top.epoch,
            offset: client.offset,
        }
    } else {
        not_recovered(top)
    }
}

fn recover_cache<P: Offset>(client: &StreamPosition, history: HistoryResult<P>) -> Recovery<P> {
    let HistoryResult { top, publications } = history;
    let up_to_date = top.offset > 0 && client.offset == top.offset && client.epoch == top.epoch;
    let latest = publications.into_iter().max_by_key(Offset::offset);
    match (up_to_date, latest) {
        (true, _) => Recovery {
            recovered: true,
            publications: Vec::new(),
            epoch: top.epoch,
            offset: top.offset,
        },
        (false, Some(latest)) => Recovery {
            recovered: true,
            publications: vec![latest],
            epoch: top.epoch,
            offset: top.offset,
        },
        (false, None) => not_recovered(top),
    }
}

fn not_recovered<P>(top: StreamPosition) -> Recovery<P> {
    Recovery {
        recovered: false,
        publications: Vec::new(),
        epoch: top.epoch,
        offset: top.offset,
    }
}
