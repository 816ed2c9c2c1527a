//! A parsed JSON document that borrows its text where it can.
//!
//! The decoders read each field of a message once. Parsing into a
//! `serde_json::Value` first copied every key and every string and built a
//! `BTreeMap` per object: a third of the time of reading a history. [`Json`]
//! is parsed by the same `serde_json` parser (the same errors, the same
//! nesting limit), but a string without escapes is a slice of the input and
//! an object is a list of its fields.
//!
//! An object behaves as `serde_json`'s map does where the decoders can tell:
//! of a repeated key the last value counts, and [`JsonMap::first_key`]
//! looks at the keys in sorted order, so the first unknown field reported is
//! the same.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

#[derive(Debug, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(JsonMap<'a>),
}

/// The fields of a JSON object, in the order of the text.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct JsonMap<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> JsonMap<'a> {
    /// The value of `name`; of a repeated key, the last.
    pub(crate) fn get(&self, name: &str) -> Option<&Json<'a>> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// The smallest key (in sorted order) for which `pick` holds.
    pub(crate) fn first_key(&self, mut pick: impl FnMut(&str) -> bool) -> Option<&str> {
        self.0
            .iter()
            .map(|(k, _)| k.as_ref())
            .filter(|k| pick(k))
            .min()
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        // As serde_json's Value: a number that is not finite becomes null.
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some((Key(k), v)) = map.next_entry()? {
            fields.push((k, v));
        }
        Ok(Json::Object(JsonMap(fields)))
    }
}

/// An object's key, borrowed where it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::{Json, JsonMap};

    /// The same document as serde_json's Value, field by field.
    fn same(json: &Json<'_>, value: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (json, value) {
            (Json::Null, Value::Null) => true,
            (Json::Bool(a), Value::Bool(b)) => a == b,
            (Json::Number(a), Value::Number(b)) => a == b,
            (Json::String(a), Value::String(b)) => a == b,
            (Json::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
            }
            (Json::Object(a), Value::Object(b)) => {
                b.iter().all(|(k, v)| a.get(k).is_some_and(|a| same(a, v)))
                    && a.0.iter().all(|(k, _)| b.contains_key(k.as_ref()))
                    && a.first_key(|_| true) == b.keys().next().map(String::as_str)
            }
            _ => false,
        }
    }

    #[test]
    fn parses_as_serde_json_does_and_borrows_plain_strings() {
        let texts = [
            r#"{"b": 1, "a": [true, null, -2, 3.5, 18446744073709551615], "c": {"x": "y"}}"#,
            r#"{"k": 1, "k": "last", "escaped\"key": "tab\there", "é": "ü"}"#,
            r#"[1e300, -0, 0.1, "", {}]"#,
            r#""just a string""#,
            "null",
        ];
        for text in texts {
            let ours: Json<'_> = serde_json::from_str(text).unwrap();
            let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
            assert!(same(&ours, &theirs), "{text}");
        }
        let Json::Object(map) = serde_json::from_str(r#"{"a": "plain", "b": "e\u0073c"}"#).unwrap()
        else {
            panic!("an object")
        };
        assert!(matches!(
            map.get("a"),
            Some(Json::String(Cow::Borrowed("plain")))
        ));
        assert!(matches!(map.get("b"), Some(Json::String(Cow::Owned(s))) if s == "esc"));
        // The same errors, nesting limit included.
        for bad in ["{\"a\": }", "[1, 2", "{1: 2}", "[1e400]", &"[".repeat(200)] {
            let ours = serde_json::from_str::<Json<'_>>(bad)
                .unwrap_err()
                .to_string();
            let theirs = serde_json::from_str::<serde_json::Value>(bad)
                .unwrap_err()
                .to_string();
            assert_eq!(ours, theirs, "{bad}");
        }
        assert_eq!(JsonMap::default().first_key(|_| true), None);
    }
}
