//! A set kept as a sorted vector: what a case holds of its signals.
//!
//! A case has a handful of signals, and a million households are held in
//! memory; a `BTreeSet` allocates a node of eleven slots for the first one.
//! [`SortedSet`] holds exactly its items, in order, and is encoded as a
//! sequence, the way serde encodes a `BTreeSet`, so stored states keep their
//! format. Reading one back sorts and deduplicates it.

use std::cmp::Ordering;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Distinct items in ascending order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SortedSet<T>(Vec<T>);

impl<T: Ord> SortedSet<T> {
    pub const fn new() -> Self {
        SortedSet(Vec::new())
    }

    /// Add `item`; `false` if it was there already. A short set grows one
    /// slot at a time.
    pub fn insert(&mut self, item: T) -> bool {
        match self.0.binary_search(&item) {
            Ok(_) => false,
            Err(pos) => {
                crate::state::insert_compact(&mut self.0, pos, item);
                true
            }
        }
    }

    pub fn contains(&self, item: &T) -> bool {
        self.0.binary_search(item).is_ok()
    }

    /// Whether an item compares equal under `cmp`, which must order items
    /// as `Ord` does (for a lookup by borrowed parts).
    pub fn contains_by(&self, cmp: impl FnMut(&T) -> Ordering) -> bool {
        self.0.binary_search_by(cmp).is_ok()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Ord> Extend<T> for SortedSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        for item in items {
            self.insert(item);
        }
    }
}

impl<T: Ord> FromIterator<T> for SortedSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut v: Vec<T> = items.into_iter().collect();
        v.sort();
        v.dedup();
        SortedSet(v)
    }
}

impl<T> IntoIterator for SortedSet<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: Serialize> Serialize for SortedSet<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.0)
    }
}

impl<'de, T: Deserialize<'de> + Ord> Deserialize<'de> for SortedSet<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<T>::deserialize(deserializer).map(|v| v.into_iter().collect())
    }
}

/// Serialize a `LiteMap` always as a map, as a `BTreeMap` is: litemap
/// writes an empty one as a sequence (`[]` in JSON). For
/// `#[serde(serialize_with = "crate::sorted::as_map")]`; reading accepts
/// either.
pub fn as_map<K, V, S>(map: &litemap::LiteMap<K, V>, serializer: S) -> Result<S::Ok, S::Error>
where
    K: Serialize,
    V: Serialize,
    S: Serializer,
{
    serializer.collect_map(map.iter())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::SortedSet;

    #[test]
    fn behaves_as_a_btree_set_and_is_encoded_as_one() {
        let items = ["d", "a", "c", "a", "b", "d", "e"];
        let mut set = SortedSet::new();
        let mut tree = BTreeSet::new();
        for item in items {
            assert_eq!(set.insert(item.to_owned()), tree.insert(item.to_owned()));
        }
        assert!(set.iter().eq(tree.iter()));
        assert_eq!(set.len(), tree.len());
        assert!(set.contains(&"c".to_owned()) && !set.contains(&"x".to_owned()));
        assert!(set.contains_by(|s| s.as_str().cmp("e")));
        // The same bytes as a BTreeSet, in JSON and in postcard (the stores).
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            serde_json::to_string(&tree).unwrap()
        );
        let bytes = postcard::to_allocvec(&tree).unwrap();
        assert_eq!(postcard::to_allocvec(&set).unwrap(), bytes);
        assert_eq!(
            postcard::from_bytes::<SortedSet<String>>(&bytes).unwrap(),
            set
        );
        // Read back from an unordered list with a duplicate: ordered, once.
        let read: SortedSet<String> = serde_json::from_str(r#"["b","a","b"]"#).unwrap();
        assert_eq!(read.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    /// The case state's rules and categories and a case event's variables
    /// are `LiteMap`s where they were `BTreeMap`s: the same bytes in JSON
    /// and in postcard, and read back from either.
    #[test]
    fn small_maps_are_encoded_as_the_btree_maps_they_replace() {
        use crate::vars::VarValue;
        use litemap::LiteMap;
        use std::collections::BTreeMap;
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        #[serde(bound(
            serialize = "V: serde::Serialize",
            deserialize = "V: serde::de::DeserializeOwned"
        ))]
        struct Field<V>(#[serde(serialize_with = "super::as_map")] LiteMap<String, V>);
        fn same<V>(entries: &[(&str, V)])
        where
            V: Clone + PartialEq + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
        {
            let tree: BTreeMap<String, V> = entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            let lite: Field<V> = Field(
                entries
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            );
            let json = serde_json::to_string(&tree).unwrap();
            assert_eq!(serde_json::to_string(&lite).unwrap(), json);
            let bytes = postcard::to_allocvec(&tree).unwrap();
            assert_eq!(postcard::to_allocvec(&lite).unwrap(), bytes);
            assert_eq!(serde_json::from_str::<Field<V>>(&json).unwrap(), lite);
            // (A variable's value is untagged: postcard cannot read it back
            // into either map, and nothing stores one in postcard.)
            if postcard::from_bytes::<BTreeMap<String, V>>(&bytes).is_ok() {
                assert_eq!(postcard::from_bytes::<Field<V>>(&bytes).unwrap(), lite);
            }
        }
        same(&[("wanbetaler", 2u32), ("crisis", 1), ("huur", 3)]);
        same(&[
            ("crisis", ("crisis".to_owned(), 9u8)),
            ("b", ("enkelvoudig".to_owned(), 3)),
        ]);
        same(&[
            ("leeftijd", VarValue::Int(-3)),
            ("crisis", VarValue::Bool(true)),
            ("bedrag_totaal_euro", VarValue::Float(1234.5)),
        ]);
        same::<u32>(&[]);
    }
}
