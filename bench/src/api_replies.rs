//! The API replies the scenarios check, decoded just far enough: publish and batch results
//! (offset and epoch of each publish), history (offsets of the retained publications and the
//! stream top) and info (connected clients). Anything else in a reply is ignored.

use crate::ledger::Position;
use serde::Deserialize;

/// Why a reply does not count as done.
pub type Failure = String;

#[derive(Debug, Deserialize)]
struct Envelope<R> {
    result: Option<R>,
    error: Option<ApiError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ApiError {
    code: u32,
    message: String,
}

impl ApiError {
    fn describe(&self) -> Failure {
        format!("API error {} {}", self.code, self.message)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PublishResult {
    offset: u64,
    epoch: String,
}

impl PublishResult {
    /// A publish into a stream always gets an offset from 1 and an epoch.
    fn position(self) -> Result<Position, Failure> {
        if self.offset == 0 || self.epoch.is_empty() {
            return Err("result without an offset (does the channel keep history?)".into());
        }
        Ok(Position {
            offset: self.offset,
            epoch: self.epoch,
        })
    }
}

fn envelope<'a, R: Deserialize<'a>>(status: u16, body: &'a [u8]) -> Result<R, Failure> {
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    let envelope: Envelope<R> =
        serde_json::from_slice(body).map_err(|e| format!("undecodable reply: {e}"))?;
    match (envelope.error, envelope.result) {
        (Some(error), _) => Err(error.describe()),
        (None, Some(result)) => Ok(result),
        (None, None) => Err("reply with neither result nor error".into()),
    }
}

/// The reply to `POST /api/publish`.
pub fn publish(status: u16, body: &[u8]) -> Result<Position, Failure> {
    envelope::<PublishResult>(status, body)?.position()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BatchReplies {
    replies: Vec<BatchReply>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BatchReply {
    publish: Option<PublishResult>,
    error: Option<ApiError>,
}

/// The reply to `POST /api/batch` of `commands` publish commands: one outcome per command, in
/// order; the whole reply fails if it is not a batch reply with exactly that many entries.
pub fn batch(
    status: u16,
    body: &[u8],
    commands: usize,
) -> Result<Vec<Result<Position, Failure>>, Failure> {
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    let batch: BatchReplies =
        serde_json::from_slice(body).map_err(|e| format!("undecodable batch reply: {e}"))?;
    if batch.replies.len() != commands {
        return Err(format!(
            "batch reply has {} entries for {commands} commands",
            batch.replies.len()
        ));
    }
    Ok(batch
        .replies
        .into_iter()
        .map(|reply| match (reply.error, reply.publish) {
            (Some(error), _) => Err(error.describe()),
            (None, Some(result)) => result.position(),
            (None, None) => Err("batch entry without a publish result".into()),
        })
        .collect())
}

/// A channel's history as `POST /api/history` returned it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Offsets of the returned publications, in the order returned.
    pub offsets: Vec<u64>,
    /// The stream top.
    pub top: u64,
    pub epoch: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HistoryResult {
    publications: Vec<HistoryPublication>,
    offset: u64,
    epoch: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HistoryPublication {
    offset: u64,
}

/// The reply to `POST /api/history`.
pub fn history(status: u16, body: &[u8]) -> Result<History, Failure> {
    let result = envelope::<HistoryResult>(status, body)?;
    Ok(History {
        offsets: result.publications.iter().map(|p| p.offset).collect(),
        top: result.offset,
        epoch: result.epoch,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InfoResult {
    nodes: Vec<NodeInfo>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeInfo {
    num_clients: u64,
}

/// Connected clients over all nodes, from the reply to `POST /api/info`.
pub fn info_clients(status: u16, body: &[u8]) -> Result<u64, Failure> {
    Ok(envelope::<InfoResult>(status, body)?
        .nodes
        .iter()
        .map(|n| n.num_clients)
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_replies() {
        let ok = br#"{"result":{"offset":7,"epoch":"abcdEFGH"}}"#;
        assert_eq!(
            publish(200, ok),
            Ok(Position {
                offset: 7,
                epoch: "abcdEFGH".into()
            })
        );
        assert_eq!(
            publish(
                200,
                br#"{"error":{"code":102,"message":"unknown channel"}}"#
            ),
            Err("API error 102 unknown channel".into())
        );
        assert!(
            publish(200, br#"{"result":{}}"#)
                .unwrap_err()
                .contains("offset")
        );
        assert_eq!(publish(401, b""), Err("HTTP 401".into()));
        assert!(publish(200, b"nonsense").is_err());
    }

    #[test]
    fn batch_replies_in_order() {
        let body = br#"{"replies":[{"publish":{"offset":1,"epoch":"e"}},
            {"error":{"code":107,"message":"bad request"}},{"publish":{}}]}"#;
        let replies = batch(200, body, 3).unwrap();
        assert_eq!(replies[0].as_ref().unwrap().offset, 1);
        assert_eq!(replies[1], Err("API error 107 bad request".into()));
        assert!(replies[2].is_err());
        assert!(batch(200, body, 4).unwrap_err().contains("3 entries for 4"));
        assert!(batch(400, b"Bad Request", 1).is_err());
    }

    #[test]
    fn history_and_info_replies() {
        let body = br#"{"result":{"publications":[{"data":{"sb":[1,2]},"offset":4},
            {"data":"x","offset":5,"tags":{"a":"b"}}],"epoch":"ep","offset":5}}"#;
        assert_eq!(
            history(200, body).unwrap(),
            History {
                offsets: vec![4, 5],
                top: 5,
                epoch: "ep".into()
            }
        );
        assert!(history(200, br#"{"error":{"code":108,"message":"not available"}}"#).is_err());
        let info = br#"{"result":{"nodes":[{"uid":"a","num_clients":3},{"num_clients":4}]}}"#;
        assert_eq!(info_clients(200, info), Ok(7));
    }
}
