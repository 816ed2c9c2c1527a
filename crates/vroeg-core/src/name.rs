//! [`Name`]: a short, immutable text that many values share.
//!
//! Rule ids, categories, team and work-queue names and the rule set's hash
//! come from the rule files and the routing table, and every case event and
//! case state names them again. As a `String` each would be copied for
//! every event; a `Name` is shared (a reference count), and is written and
//! read as the plain string it is: the JSON and postcard bytes are those of
//! a `String`.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Arc<str>);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Name {
    fn default() -> Self {
        Name::from("")
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name(Arc::from(s))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name(Arc::from(s))
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        Name(Arc::from(s.as_str()))
    }
}

impl From<Name> for String {
    fn from(n: Name) -> Self {
        n.0.as_ref().to_owned()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        &*self.0 == other.as_str()
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == &*other.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name, E> {
                Ok(Name::from(v))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Name, E> {
                Ok(Name::from(v))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_written_and_read_as_the_string_it_is() {
        for text in ["", "crisis", "wijkteam Noord – ‘t Zand", "a\"b\\c\n"] {
            let name = Name::from(text);
            let owned = text.to_owned();
            assert_eq!(
                serde_json::to_string(&name).unwrap(),
                serde_json::to_string(&owned).unwrap()
            );
            assert_eq!(
                postcard::to_allocvec(&name).unwrap(),
                postcard::to_allocvec(&owned).unwrap()
            );
            let json: Name = serde_json::from_str(&serde_json::to_string(&owned).unwrap()).unwrap();
            let bytes: Name =
                postcard::from_bytes(&postcard::to_allocvec(&owned).unwrap()).unwrap();
            assert_eq!((json.as_str(), bytes.as_str()), (text, text));
            assert_eq!(format!("{name}"), text);
            assert_eq!(format!("{name:?}"), format!("{text:?}"));
        }
        // Numbers are not names.
        assert!(serde_json::from_str::<Name>("3").is_err());
    }

    #[test]
    fn names_order_and_compare_as_their_strings() {
        let mut names: Vec<Name> = ["b", "a", "ab", ""].into_iter().map(Name::from).collect();
        names.sort();
        let texts: Vec<&str> = names.iter().map(Name::as_str).collect();
        assert_eq!(texts, ["", "a", "ab", "b"]);
        let a = Name::from("a");
        let owned = String::from("a");
        assert_eq!(a, "a");
        assert_eq!("a", a);
        assert_eq!(a, owned);
        assert_ne!(a, *"b");
        // A clone shares the text.
        assert!(std::ptr::eq(a.as_str(), a.clone().as_str()));
    }
}
