//! `batch`: many commands in one request, answered in order.

use super::ApiError;
use super::call::{Call, Outcome, decode_object};
use crate::Node;
use futures_util::StreamExt;
use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use spindle_proto::json::null_as_default;
use spindle_proto::{DecodeError, api};

/// Commands of a parallel batch running at the same time, at most.
pub const BATCH_CONCURRENCY: usize = 1024;

/// `api::BatchRequest` as sent, commands still raw.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawBatch<'a> {
    #[serde(borrow, deserialize_with = "null_as_default")]
    commands: Vec<Option<&'a RawValue>>,
    #[serde(deserialize_with = "null_as_default")]
    parallel: bool,
}

/// `api::BatchRequest`, except that a `null` command is kept (and answered with an error)
/// instead of failing the whole body.
#[derive(Debug, Default)]
pub(super) struct BatchBody {
    commands: Vec<Option<api::Command>>,
    parallel: bool,
}

impl BatchBody {
    /// Decodes a batch body; any command that is neither `null` nor a decodable object makes
    /// the whole body undecodable (as in Centrifugo).
    pub fn decode(body: &[u8]) -> Result<BatchBody, DecodeError> {
        let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
        if first != Some(b'{') && first != Some(b'n') {
            return Err(DecodeError::Json("expected a JSON object".into()));
        }
        let raw: Option<RawBatch<'_>> =
            serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
        let raw = raw.unwrap_or_default();
        let commands = raw
            .commands
            .into_iter()
            .map(|command| match command {
                None => Ok(None),
                Some(json) => decode_object(json.get().as_bytes()).map(Some),
            })
            .collect::<Result<_, _>>()?;
        Ok(BatchBody {
            commands,
            parallel: raw.parallel,
        })
    }
}

/// One reply: `{"error":{...}}` or `{"<method>":{...}}`.
struct Reply {
    method: &'static str,
    outcome: Outcome,
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match &self.outcome {
            Ok(result) => map.serialize_entry(self.method, result)?,
            Err(error) => map.serialize_entry("error", &error.to_wire())?,
        }
        map.end()
    }
}

#[derive(serde::Serialize)]
struct Replies {
    replies: Vec<Reply>,
}

/// Runs a batch and encodes `{"replies":[...]}`: one reply per command, in command order,
/// whether the commands ran one after another or (`parallel`) concurrently. A `null` command
/// answers 107, a command without a known method 104.
pub(super) async fn run(node: &Node, body: BatchBody) -> Result<Vec<u8>, serde_json::Error> {
    let replies = if body.parallel {
        futures_util::stream::iter(body.commands)
            .map(|command| run_one(node, command))
            .buffered(BATCH_CONCURRENCY)
            .collect()
            .await
    } else {
        let mut replies = Vec::with_capacity(body.commands.len());
        for command in body.commands {
            replies.push(run_one(node, command).await);
        }
        replies
    };
    serde_json::to_vec(&Replies { replies })
}

async fn run_one(node: &Node, command: Option<api::Command>) -> Reply {
    let Some(command) = command else {
        return Reply {
            method: "",
            outcome: Err(ApiError::BAD_REQUEST),
        };
    };
    let Some(call) = Call::from_command(command) else {
        return Reply {
            method: "",
            outcome: Err(ApiError::NOT_FOUND),
        };
    };
    let method = call.method().name();
    Reply {
        method,
        outcome: call.run(node).await,
    }
}
