//! Centrifugo's JSON rules as serde helpers, applied to every generated field by `build.rs`.
//!
//! - Zero values are omitted ([`is_zero`], [`is_false`] and the std `is_empty`/`is_none`).
//! - A literal `null` reads as the zero value ([`null_as_default`]).
//! - `bytes` payload fields are raw embedded JSON ([`raw_bytes`]): written verbatim (less any raw
//!   newline, which only insignificant whitespace can hold in valid JSON and which would break
//!   `\n` framing) and captured verbatim on decode. Payload text that is not JSON fails encoding
//!   with [`crate::EncodeError::PayloadNotJson`].
//!
//! Raw capture works with `serde_json::from_slice`/`from_str` only (not from a `Value`), which is
//! how every decoder in this crate reads.

use bytes::Bytes;
use serde::{Deserialize, Deserializer};

/// True for a number's zero value.
pub fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// True for `false`.
pub fn is_false(value: &bool) -> bool {
    !*value
}

/// Reads `null` as the type's default instead of failing.
pub fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Turns payload bytes into a JSON string literal holding them as text, so they embed as a raw
/// JSON value. Delta-compressed publications to JSON clients carry `data` this way
/// (docs/protocol.md §4.6): the payload or patch as a string. Bytes that are not UTF-8 are written
/// lossily; fossil patches of JSON payloads are UTF-8 text.
pub fn string_payload(bytes: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(bytes);
    // Serializing a &str cannot fail.
    Bytes::from(serde_json::to_vec(&text).unwrap_or_default())
}

/// `bytes` ↔ raw embedded JSON.
pub mod raw_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer, ser::Error as _};
    use serde_json::value::RawValue;

    /// The serializer error message that marks a payload that is not JSON.
    pub(crate) const NOT_JSON: &str = "payload is not valid JSON";

    pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(bytes).map_err(|_| S::Error::custom(NOT_JSON))?;
        let stripped;
        let text = if text.contains('\n') {
            stripped = text.replace('\n', "");
            stripped.as_str()
        } else {
            text
        };
        let raw: &RawValue = serde_json::from_str(text).map_err(|_| S::Error::custom(NOT_JSON))?;
        raw.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        if raw.get() == "null" {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(raw.get().as_bytes()))
    }
}

/// `bytes` ↔ a JSON string holding the bytes as text (the emulation request's `data`).
pub mod text_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer, ser::Error as _};

    pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(bytes).map_err(|_| S::Error::custom("data is not UTF-8"))?;
        serializer.serialize_str(text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        Ok(Bytes::from(text))
    }
}

/// A `key` + `value` message standing for one entry of a protobuf map (see `client.proto`).
pub trait MapEntry: Sized {
    type Value: serde::Serialize + serde::de::DeserializeOwned + Default;
    fn key(&self) -> &str;
    fn value(&self) -> Option<&Self::Value>;
    fn from_parts(key: String, value: Self::Value) -> Self;
}

/// A list of map entries ↔ a JSON object, in list order; a missing value reads as its default.
pub mod entries {
    use super::MapEntry;
    use serde::de::{Deserializer, MapAccess, Visitor};
    use serde::ser::{SerializeMap, Serializer};
    use std::fmt;
    use std::marker::PhantomData;

    pub fn serialize<S: Serializer, E: MapEntry>(
        entries: &[E],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let default = E::Value::default();
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for entry in entries {
            map.serialize_entry(entry.key(), entry.value().unwrap_or(&default))?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>, E: MapEntry>(
        deserializer: D,
    ) -> Result<Vec<E>, D::Error> {
        struct EntriesVisitor<E>(PhantomData<E>);
        impl<'de, E: MapEntry> Visitor<'de> for EntriesVisitor<E> {
            type Value = Vec<E>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_unit<Er>(self) -> Result<Vec<E>, Er> {
                Ok(Vec::new())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Vec<E>, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = access.next_entry::<String, Option<E::Value>>()? {
                    entries.push(E::from_parts(key, value.unwrap_or_default()));
                }
                Ok(entries)
            }
        }
        deserializer.deserialize_any(EntriesVisitor(PhantomData))
    }
}
