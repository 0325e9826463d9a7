//! The legacy single route `POST <prefix>`: one or more `{"id","method","params"}` commands
//! separated by whitespace (newlines in practice), answered by newline-separated replies
//! `{"id","result"}` / `{"id","error"}`.
//!
//! Centrifugo's quirks are kept: a missing `method` means publish (method 0); method names match
//! in any case; a number of a method not served here answers 104, but a name nobody knows makes
//! the whole body undecodable (400); missing `params` answer 107 (except `info`), `null` params
//! are the empty request. Unlike Centrifugo, the whole body is decoded before any command runs,
//! so an undecodable body has no effects.

use super::ApiError;
use super::call::{Call, Method, Outcome};
use crate::Node;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use spindle_proto::json::null_as_default;
use std::fmt;

/// A served method, or `None` for a known method this node does not serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LegacyMethod(Option<Method>);

impl Default for LegacyMethod {
    fn default() -> Self {
        LegacyMethod(Some(Method::Publish))
    }
}

impl<'de> Deserialize<'de> for LegacyMethod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MethodVisitor;

        impl Visitor<'_> for MethodVisitor {
            type Value = LegacyMethod;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a method name or number")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<LegacyMethod, E> {
                Method::from_legacy_name(name)
                    .map(LegacyMethod)
                    .map_err(|()| E::custom(format!("unknown method {name:?}")))
            }

            fn visit_u64<E: de::Error>(self, number: u64) -> Result<LegacyMethod, E> {
                Ok(LegacyMethod(
                    i64::try_from(number)
                        .ok()
                        .and_then(Method::from_legacy_number),
                ))
            }

            fn visit_i64<E: de::Error>(self, number: i64) -> Result<LegacyMethod, E> {
                Ok(LegacyMethod(Method::from_legacy_number(number)))
            }
        }

        deserializer.deserialize_any(MethodVisitor)
    }
}

#[derive(Debug, Deserialize)]
struct LegacyCommand<'a> {
    #[serde(default, deserialize_with = "null_as_default")]
    id: u32,
    #[serde(default)]
    method: LegacyMethod,
    /// Kept raw, `null` included, to tell a missing `params` from a null one.
    #[serde(default, borrow, deserialize_with = "raw")]
    params: Option<&'a RawValue>,
}

fn raw<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

struct LegacyReply {
    id: u32,
    outcome: Outcome,
}

impl Serialize for LegacyReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if self.id != 0 {
            map.serialize_entry("id", &self.id)?;
        }
        match &self.outcome {
            Ok(result) => map.serialize_entry("result", result)?,
            Err(error) => map.serialize_entry("error", &error.to_wire())?,
        }
        map.end()
    }
}

/// Why a legacy body is refused as a whole (HTTP 400).
#[derive(Debug)]
pub(super) struct BadBody;

/// Decodes every command of `body`, runs them in order and encodes the replies.
pub(super) async fn run(node: &Node, body: &[u8]) -> Result<Vec<u8>, BadBody> {
    if body.is_empty() {
        return Err(BadBody);
    }
    let commands = serde_json::Deserializer::from_slice(body)
        .into_iter::<&RawValue>()
        .map(|json| {
            let json = json.map_err(|_| BadBody)?;
            if !json.get().starts_with('{') {
                return Err(BadBody);
            }
            serde_json::from_str::<LegacyCommand<'_>>(json.get()).map_err(|_| BadBody)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for command in commands {
        let reply = LegacyReply {
            id: command.id,
            outcome: run_one(node, command).await,
        };
        if !out.is_empty() {
            out.push(b'\n');
        }
        serde_json::to_writer(&mut out, &reply).map_err(|_| BadBody)?;
    }
    Ok(out)
}

async fn run_one(node: &Node, command: LegacyCommand<'_>) -> Outcome {
    let Some(method) = command.method.0 else {
        return Err(ApiError::NOT_FOUND);
    };
    let params = match (command.params, method) {
        (Some(params), _) => params.get(),
        (None, Method::Info) => "{}",
        (None, _) => return Err(ApiError::BAD_REQUEST),
    };
    match Call::decode(method, params.as_bytes()) {
        Ok(call) => call.run(node).await,
        Err(_) => Err(ApiError::BAD_REQUEST),
    }
}
