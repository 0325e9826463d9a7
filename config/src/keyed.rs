//! Centrifugo "squashes" some structs: a namespace is `name` plus every channel option in one
//! object, a named proxy is `name` plus the proxy keys, `client.proxy.connect` is `enabled` plus
//! the proxy keys. `#[serde(flatten)]` would read such objects, but it buffers the map and
//! swallows unknown keys, so `channel.namespaces[0].histroy_size` would go unreported.
//!
//! [`deserialize_keyed`] instead takes the one extra key out of the stream of keys and hands the
//! rest to the inner struct's own `Deserialize`, so the unknown-key report still sees every key.
//! Serialization can use `#[serde(flatten)]`, which has no such problem.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Reads a map holding the key `key` (deserialized as `V`) and the fields of `T`.
/// Returns `None` for the key when it is absent.
pub(crate) fn deserialize_keyed<'de, D, V, T>(
    deserializer: D,
    key: &'static str,
) -> Result<(Option<V>, T), D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_map(KeyedVisitor {
        key,
        marker: PhantomData,
    })
}

struct KeyedVisitor<V, T> {
    key: &'static str,
    marker: PhantomData<fn() -> (V, T)>,
}

impl<'de, V: Deserialize<'de>, T: Deserialize<'de>> Visitor<'de> for KeyedVisitor<V, T> {
    type Value = (Option<V>, T);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object (with an optional {:?} key)", self.key)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut filter = WithoutKey {
            inner: map,
            key: self.key,
            found: None,
        };
        let rest = T::deserialize(MapAccessDeserializer::new(&mut filter))?;
        Ok((filter.found, rest))
    }
}

/// A map access that hides one key (keeping its value) from the reader.
struct WithoutKey<A, V> {
    inner: A,
    key: &'static str,
    found: Option<V>,
}

impl<'de, A: MapAccess<'de>, V: Deserialize<'de>> MapAccess<'de> for WithoutKey<A, V> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.inner.next_key::<String>()? {
            if key == self.key {
                self.found = Some(self.inner.next_value()?);
                continue;
            }
            return seed.deserialize(key.into_deserializer()).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default, Debug, PartialEq)]
    #[serde(default)]
    struct Inner {
        a: u32,
        b: bool,
    }

    #[test]
    fn splits_the_key_from_the_fields_and_reports_unknown_keys() {
        let value = serde_json::json!({"a": 3, "name": "chat", "zz": 1, "b": true});
        let mut ignored = Vec::new();
        let (name, inner): (Option<String>, Inner) = serde_ignored::deserialize(value, |path| {
            ignored.push(path.to_string());
        })
        .map(|v: Wrapper| v.0)
        .unwrap();
        assert_eq!(name.as_deref(), Some("chat"));
        assert_eq!(inner, Inner { a: 3, b: true });
        assert_eq!(ignored, vec!["zz".to_owned()]);
    }

    struct Wrapper((Option<String>, Inner));

    impl<'de> Deserialize<'de> for Wrapper {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize_keyed(d, "name").map(Wrapper)
        }
    }
}
