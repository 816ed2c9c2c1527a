//! The raw, located form of a rule file, before validation.
//!
//! serde-saphyr stops at the first problem when it deserialises straight
//! into a typed struct. To report every problem at once, a rule file is first
//! read as maps of located keys to located JSON values ([`Located`]); the
//! typed rules are then built field by field in `ruleset.rs`, collecting
//! every problem on the way.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

/// A YAML mapping with the location of every key and value, in file order.
/// Duplicate keys are kept, so they can be reported.
#[derive(Debug, Default)]
pub struct LocatedMap(pub Vec<(Spanned<String>, Spanned<Value>)>);

impl<'de> Deserialize<'de> for LocatedMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LocatedMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LocatedMap, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<Spanned<Value>>()?;
                    out.push((key, value));
                }
                Ok(LocatedMap(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LocatedMap, E> {
                Ok(LocatedMap::default())
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// The top level of a rule file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuleFile {
    #[serde(default)]
    pub settings: Option<Spanned<LocatedMap>>,
    #[serde(default)]
    pub rules: Option<Vec<Spanned<LocatedMap>>>,
}

/// Line and column of a located value.
pub fn at<T>(s: &Spanned<T>) -> (u64, u64) {
    (s.referenced.line(), s.referenced.column())
}
