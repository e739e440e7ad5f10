//! [`CompactMap`]: a string-keyed map kept as one sorted slice, for the small maps of an
//! object the operator caches (trigger metadata, `status.triggersActivity`).
//!
//! Why not `BTreeMap`: its first node has room for eleven entries whatever the map holds —
//! 640 bytes for a trigger's four metadata keys, 320 for one activity flag — and the operator
//! keeps every ScaledObject in its cache (issue #5: 10 KiB per object in all). The JSON and
//! the schema are those of a `BTreeMap<String, V>`: an object with its keys in order; of a
//! repeated key the last value counts, as serde_json's maps do.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A map from strings to `V`, sorted by key, in one allocation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CompactMap<V>(Box<[(String, V)]>);

impl<V> CompactMap<V> {
    /// The empty map.
    pub fn new() -> Self {
        Self(Box::new([]))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        let found = self.0.binary_search_by(|(k, _)| k.as_str().cmp(key));
        found.ok().map(|i| &self.0[i].1)
    }

    /// Whether `key` is in the map.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The entries, by key.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V> Default for CompactMap<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: fmt::Debug> fmt::Debug for CompactMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> FromIterator<(String, V)> for CompactMap<V> {
    /// The entries, sorted by key; of a repeated key the last value counts.
    fn from_iter<I: IntoIterator<Item = (String, V)>>(entries: I) -> Self {
        let mut entries: Vec<_> = entries.into_iter().collect();
        // Stable: equal keys keep their order, and `dedup_by` keeps the first of a run.
        entries.reverse();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, first| later.0 == first.0);
        Self(entries.into_boxed_slice())
    }
}

impl<V> From<BTreeMap<String, V>> for CompactMap<V> {
    fn from(map: BTreeMap<String, V>) -> Self {
        Self(map.into_iter().collect())
    }
}

impl<'a, V> IntoIterator for &'a CompactMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, V)>,
        fn(&'a (String, V)) -> (&'a String, &'a V),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<V> std::ops::Index<&str> for CompactMap<V> {
    type Output = V;

    /// The value of `key`; panics when it is missing, as `BTreeMap`'s index does.
    fn index(&self, key: &str) -> &V {
        self.get(key)
            .unwrap_or_else(|| panic!("no entry {key:?} in the map"))
    }
}

impl<V: Serialize> Serialize for CompactMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for CompactMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

struct MapVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
    type Value = CompactMap<V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(entry) = map.next_entry::<String, V>()? {
            entries.push(entry);
        }
        Ok(entries.into_iter().collect())
    }
}

impl<V: JsonSchema> JsonSchema for CompactMap<V> {
    fn inline_schema() -> bool {
        <BTreeMap<String, V>>::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        <BTreeMap<String, V>>::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        <BTreeMap<String, V>>::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        <BTreeMap<String, V>>::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> CompactMap<String> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn entries_are_found_by_key_and_kept_in_key_order() {
        let m = map(&[
            ("query", "q"),
            ("threshold", "5"),
            ("activationThreshold", "1"),
        ]);
        assert_eq!(m.get("threshold").map(String::as_str), Some("5"));
        assert_eq!(m.get("missing"), None);
        assert_eq!(&m["query"], "q");
        assert!(m.contains_key("activationThreshold"));
        let keys: Vec<_> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, ["activationThreshold", "query", "threshold"]);
        assert_eq!(m.len(), 3);
        assert!(CompactMap::<String>::new().is_empty());
    }

    #[test]
    fn the_json_is_that_of_a_btree_map() {
        let json = r#"{"b":"2","a":"1","c":"3","a":"last"}"#;
        let compact: CompactMap<String> = serde_json::from_str(json).expect("a map");
        let btree: BTreeMap<String, String> = serde_json::from_str(json).expect("a map");
        assert_eq!(compact, CompactMap::from(btree.clone()));
        assert_eq!(
            serde_json::to_string(&compact).expect("serializes"),
            serde_json::to_string(&btree).expect("serializes")
        );
        assert_eq!(format!("{compact:?}"), format!("{btree:?}"));
        let error = serde_json::from_str::<CompactMap<String>>(r#"["a"]"#).expect_err("not a map");
        assert!(error.to_string().contains("expected a map"), "{error}");
        let error =
            serde_json::from_str::<CompactMap<String>>(r#"{"a": 1}"#).expect_err("not a string");
        assert!(error.to_string().contains("expected a string"), "{error}");
    }

    #[test]
    fn the_schema_is_that_of_a_btree_map() {
        let compact = schemars::schema_for!(CompactMap<String>);
        let btree = schemars::schema_for!(BTreeMap<String, String>);
        assert_eq!(compact, btree);
    }
}
