//! The objection list: addresses and persons who object to processing
//! (AVG article 21). Their signals are dropped at intake, counted, and never
//! stored, logged or dead-lettered.
//!
//! The list is text, one entry per line:
//!
//! ```text
//! # comments and blank lines are ignored
//! adres 1234AB 12          # postcode and house number
//! adres 1234 ab 12-a       # with a suffix; written as partners do
//! bsn 111222333            # a person, wherever they live
//! ```
//!
//! It is held only as pseudonyms under the household secret: an address as
//! its household key, a BSN as [`HouseholdKeyer::person`]. This module does
//! no IO; the caller reads the file and names it in errors.

use std::collections::HashSet;

use crate::household::{HouseholdKey, HouseholdKeyer};
use crate::signal::{normalise_postcode, normalise_suffix, validate_bsn, Address, SignalBody};
use crate::Signal;

/// One problem in an objection list, at its line and column (1-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct OptOutError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The objection list, as pseudonyms.
#[derive(Clone, Debug, Default)]
pub struct OptOut {
    households: HashSet<HouseholdKey>,
    persons: HashSet<String>,
}

impl OptOut {
    /// Parse a list. Returns every problem, not only the first; a problem
    /// never echoes a BSN.
    pub fn parse(text: &str, keyer: &HouseholdKeyer) -> Result<OptOut, Vec<OptOutError>> {
        let mut list = OptOut::default();
        let mut errors = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("");
            let column = line.len() - line.trim_start().len() + 1;
            let mut words = line.split_whitespace();
            let Some(kind) = words.next() else { continue };
            let rest: Vec<&str> = words.collect();
            let err = |message: String| OptOutError {
                line: n + 1,
                column,
                message,
            };
            match kind {
                "adres" => match parse_address(&rest) {
                    Ok(address) => {
                        list.households.insert(keyer.key(&address));
                    }
                    Err(message) => errors.push(err(message)),
                },
                "bsn" => match rest.as_slice() {
                    [bsn] => match validate_bsn(bsn) {
                        Ok(bsn) => {
                            list.persons.insert(keyer.person(&bsn));
                        }
                        Err(why) => errors.push(err(format!("invalid bsn: {why}"))),
                    },
                    _ => errors.push(err("expected `bsn <9 digits>`".into())),
                },
                other => errors.push(err(format!(
                    "unknown entry {other:?}; expected `adres <postcode> <number>` or `bsn <number>`"
                ))),
            }
        }
        if errors.is_empty() {
            Ok(list)
        } else {
            Err(errors)
        }
    }

    /// Entries on the list (addresses and persons).
    pub fn len(&self) -> usize {
        self.households.len() + self.persons.len()
    }

    pub fn is_empty(&self) -> bool {
        self.households.is_empty() && self.persons.is_empty()
    }

    /// Whether the household at this key objected.
    pub fn has_household(&self, key: &HouseholdKey) -> bool {
        self.households.contains(key)
    }

    /// Whether the person with this BSN objected.
    pub fn has_person(&self, bsn: &str, keyer: &HouseholdKeyer) -> bool {
        !self.persons.is_empty() && self.persons.contains(&keyer.person(bsn))
    }

    /// Whether this signal must be dropped: its household's address or its
    /// person is on the list. `key` is the signal's household key.
    pub fn blocks(&self, signal: &Signal, key: &HouseholdKey, keyer: &HouseholdKeyer) -> bool {
        if self.households.contains(key) {
            return true;
        }
        match &signal.body {
            SignalBody::Arrears(a) => a.client.bsn.as_deref().is_some_and(|bsn| {
                !self.persons.is_empty() && self.persons.contains(&keyer.person(bsn))
            }),
            SignalBody::Absence(_) => false,
        }
    }
}

/// `<postcode> <number>[suffix]`, with the postcode in one or two words and
/// the suffix attached (`12-a`, `12a`) or separate (`12 a`).
fn parse_address(words: &[&str]) -> Result<Address, String> {
    const USAGE: &str = "expected `adres <postcode> <number>[suffix]`, e.g. `adres 1234AB 12-a`";
    let (postcode, rest) = match words {
        [a, b, rest @ ..] if a.len() == 4 && b.len() == 2 => (format!("{a}{b}"), rest),
        [a, rest @ ..] => (a.to_string(), rest),
        [] => return Err(USAGE.into()),
    };
    let postcode =
        normalise_postcode(&postcode).ok_or_else(|| format!("invalid postcode; {USAGE}"))?;
    let Some((number, tail)) = rest.split_first() else {
        return Err(USAGE.into());
    };
    let digits = number.bytes().take_while(u8::is_ascii_digit).count();
    let huisnummer: u32 = number[..digits]
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid house number; {USAGE}"))?;
    let suffix = format!("{}{}", &number[digits..], tail.concat());
    Ok(Address {
        straatnaam: String::new(),
        postcode,
        huisnummer,
        huisnummertoevoeging: normalise_suffix(&suffix),
        plaatsnaam: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyer() -> HouseholdKeyer {
        HouseholdKeyer::new(b"secret")
    }

    fn address(postcode: &str, nr: u32, suffix: Option<&str>) -> Address {
        Address {
            straatnaam: "Dorpsstraat".into(),
            postcode: postcode.into(),
            huisnummer: nr,
            huisnummertoevoeging: suffix.map(str::to_owned),
            plaatsnaam: "Ergens".into(),
        }
    }

    #[test]
    fn addresses_are_matched_however_they_are_written() {
        let k = keyer();
        let list = OptOut::parse(
            "# bezwaren\nadres 1234AB 12\n  adres 1234 ab 7-a  # met toevoeging\nadres 9999ZZ 3 bis\n\nbsn 111222333\n",
            &k,
        )
        .unwrap();
        assert_eq!(list.len(), 4);
        assert!(list.has_household(&k.key(&address("1234AB", 12, None))));
        assert!(list.has_household(&k.key(&address("1234AB", 7, Some("A")))));
        assert!(list.has_household(&k.key(&address("9999ZZ", 3, Some("BIS")))));
        assert!(!list.has_household(&k.key(&address("1234AB", 7, None))));
        assert!(!list.has_household(&k.key(&address("1234AB", 13, None))));
    }

    #[test]
    fn every_bad_line_is_reported_with_its_place_and_no_bsn_is_echoed() {
        let errors = OptOut::parse(
            "adres 1234AB 12\nadres 0000AA 1\nbsn 123456789\n  wie 1\nadres 1234AB\nbsn\n",
            &keyer(),
        )
        .unwrap_err();
        let lines: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(lines, vec![(2, 1), (3, 1), (4, 3), (5, 1), (6, 1)]);
        assert!(errors[1].message.contains("elfproef"), "{}", errors[1]);
        assert!(errors.iter().all(|e| !e.to_string().contains("123456789")));
    }

    #[test]
    fn persons_are_kept_only_as_pseudonyms() {
        let k = keyer();
        let list = OptOut::parse("bsn 111222333\n", &k).unwrap();
        assert!(list.persons.contains(&k.person("111222333")));
        assert!(list.persons.iter().all(|p| !p.contains("111222333")));
        assert_ne!(k.person("111222333"), keyer_other().person("111222333"));
    }

    fn keyer_other() -> HouseholdKeyer {
        HouseholdKeyer::new(b"another secret")
    }
}
