//! After publishing: read the channels' history back through `POST /api/history` and compare
//! it with what the publish replies said, so a publishes/s figure cannot count publishes that
//! never reached a stream.
//!
//! Every channel: its stream top must equal the number of publishes answered for it (channels
//! are fresh, so offsets start at 1) and its epoch the one the replies carried. A few channels,
//! spread over the range, are read in full: the retained publications must be the last
//! `min(history_size, published)` offsets, contiguous and ending at the top.

use crate::api_publish::connect;
use crate::api_replies::{self, History};
use crate::http::ApiConnection;
use crate::ledger::Ledger;
use crate::server::Endpoints;
use anyhow::{Result, anyhow};

/// What the history said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryCheck {
    /// Channels whose top was read.
    pub channels: u64,
    /// Channels whose top and epoch match the publish replies.
    pub matching: u64,
    /// The first channel that did not match, described.
    pub first_mismatch: Option<String>,
    /// Channels read in full.
    pub read_in_full: u64,
    /// Of those, channels holding exactly the expected offsets.
    pub full_ok: u64,
    /// Publications returned by the full reads.
    pub retained: u64,
    /// The first full read that was wrong, described.
    pub first_full_problem: Option<String>,
}

impl HistoryCheck {
    pub fn is_clean(&self) -> bool {
        self.matching == self.channels && self.full_ok == self.read_in_full
    }
}

/// Reads the top of every channel and `full` channels in full (limit `history_size`); a
/// failed read counts as a mismatch, only a lost API connection is an error.
pub async fn check(
    endpoints: &Endpoints,
    channels: &[String],
    ledger: &Ledger,
    full: usize,
    history_size: u32,
) -> Result<HistoryCheck> {
    let mut api = connect(endpoints).await?;
    let mut check = HistoryCheck::default();
    for (c, name) in channels.iter().enumerate() {
        check.channels += 1;
        let history = match read(&mut api, name, 0).await {
            Ok(history) => history,
            Err(error) => {
                check
                    .first_mismatch
                    .get_or_insert_with(|| format!("{error:#}"));
                continue;
            }
        };
        let published = ledger.count(c);
        let epoch_ok = published == 0 || ledger.epoch(c) == Some(history.epoch.as_str());
        if history.top == published && epoch_ok {
            check.matching += 1;
        } else {
            check.first_mismatch.get_or_insert_with(|| {
                format!(
                    "{name}: top {} epoch {:?}, but {published} publishes answered (epoch {:?})",
                    history.top,
                    history.epoch,
                    ledger.epoch(c)
                )
            });
        }
    }
    let full = full.min(channels.len());
    for i in 0..full {
        let c = i * channels.len() / full;
        check.read_in_full += 1;
        let history = match read(&mut api, &channels[c], history_size).await {
            Ok(history) => history,
            Err(error) => {
                check
                    .first_full_problem
                    .get_or_insert_with(|| format!("{error:#}"));
                continue;
            }
        };
        check.retained += history.offsets.len() as u64;
        let published = ledger.count(c);
        let kept = published.min(u64::from(history_size));
        let expected: Vec<u64> = (published - kept + 1..=published).collect();
        if history.offsets == expected && history.top == published {
            check.full_ok += 1;
        } else {
            check.first_full_problem.get_or_insert_with(|| {
                format!(
                    "{}: {} publications, offsets {:?}…{:?}, top {}; expected {}…{} ({kept})",
                    channels[c],
                    history.offsets.len(),
                    history.offsets.first(),
                    history.offsets.last(),
                    history.top,
                    published - kept + 1,
                    published
                )
            });
        }
    }
    Ok(check)
}

/// `POST /api/history` of `channel` with `limit` (0: only the top).
async fn read(api: &mut ApiConnection, channel: &str, limit: u32) -> Result<History> {
    let body = serde_json::json!({"channel": channel, "limit": limit}).to_string();
    let (status, reply) = api.post_raw("history", body.as_bytes()).await?;
    api_replies::history(status, reply).map_err(|e| anyhow!("history of {channel}: {e}"))
}
