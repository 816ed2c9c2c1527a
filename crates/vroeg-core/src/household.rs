//! Households: the normalised address and its keyed pseudonym.
//!
//! Signals are bundled per address, as municipalities do. The key is an
//! HMAC-SHA256 of the normalised address under a secret from config, so the
//! key identifies a household without revealing where it lives, and nobody
//! without the secret can compute it from an address. Logs and metrics show
//! only this key. This module must not keep or return the address itself.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::name::Name;
use crate::signal::Address;

/// The pseudonymous key of a household: 32 lower-case hex digits (the first
/// 128 bits of the HMAC).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HouseholdKey(pub Name);

impl HouseholdKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The household partition this key belongs to, among `partitions`
    /// (at least 1): the key's first 64 bits, modulo the count. Intake sends
    /// a household's signals and feedback to this partition of the
    /// household topic, and its state lives in the same partition of the
    /// changelog. The function must never change: a changed mapping would
    /// split households between partitions.
    pub fn partition(&self, partitions: u32) -> u32 {
        let prefix = self.0.get(..16).unwrap_or(&self.0);
        let bits = u64::from_str_radix(prefix, 16).unwrap_or_else(|_| {
            // Not hex (never produced by the keyer): a stable fold instead.
            self.0
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        });
        (bits % u64::from(partitions.max(1))) as u32
    }
}

impl std::fmt::Display for HouseholdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Computes household keys under one secret.
#[derive(Clone)]
pub struct HouseholdKeyer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for HouseholdKeyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HouseholdKeyer { secret: <redacted> }")
    }
}

impl HouseholdKeyer {
    pub fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length.
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac accepts any key length");
        HouseholdKeyer { mac }
    }

    /// The canonical form of an address that the key is computed over:
    /// `postcode|number|suffix`. Street and town are not part of it: the
    /// postcode and number already fix the address, and spelling of street
    /// names differs between partners.
    pub fn canonical(address: &Address) -> String {
        format!(
            "{}|{}|{}",
            address.postcode,
            address.huisnummer,
            address.huisnummertoevoeging.as_deref().unwrap_or("")
        )
    }

    /// The pseudonym of a person (by BSN) under the same secret, for the
    /// objection list: a BSN is never kept in the clear.
    pub fn person(&self, bsn: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"bsn|");
        mac.update(bsn.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    pub fn key(&self, address: &Address) -> HouseholdKey {
        let mut mac = self.mac.clone();
        mac.update(Self::canonical(address).as_bytes());
        let digest = mac.finalize().into_bytes();
        // The hex digits in place, then once into the shared text.
        let mut digits = [0u8; 32];
        hex::encode_to_slice(&digest[..16], &mut digits).expect("16 bytes are 32 hex digits");
        let digits = std::str::from_utf8(&digits).expect("hex digits are ASCII");
        HouseholdKey(Name::from(digits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{normalise_postcode, normalise_suffix};

    fn addr(postcode: &str, nr: u32, suffix: Option<&str>) -> Address {
        Address {
            straatnaam: "Dorpsstraat".into(),
            postcode: normalise_postcode(postcode).unwrap(),
            huisnummer: nr,
            huisnummertoevoeging: suffix.and_then(normalise_suffix),
            plaatsnaam: "Utrecht".into(),
        }
    }

    #[test]
    fn suffix_spellings_are_one_household() {
        let k = HouseholdKeyer::new(b"secret");
        let a = k.key(&addr("1234 ab", 12, Some("-A")));
        assert_eq!(a, k.key(&addr("1234AB", 12, Some(" a"))));
        assert_eq!(a, k.key(&addr("1234ab", 12, Some("A"))));
        assert_ne!(a, k.key(&addr("1234AB", 12, None)));
        assert_ne!(a, k.key(&addr("1234AB", 12, Some("B"))));
        assert_eq!(a.as_str().len(), 32);
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        let key = HouseholdKey("00000000000000ff0123456789abcdef".into());
        assert_eq!(key.partition(12), 255 % 12);
        assert_eq!(key.partition(1), 0);
        assert_eq!(key.partition(0), 0);
        let k = HouseholdKeyer::new(b"secret");
        let mut counts = [0u32; 12];
        for nr in 1..=1200 {
            counts[k.key(&addr("1234AB", nr, None)).partition(12) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (60..=140).contains(c)), "{counts:?}");
    }

    #[test]
    fn the_key_is_the_first_half_of_the_hmac_in_lower_case_hex() {
        let a = addr("1234AB", 7, Some("b"));
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(HouseholdKeyer::canonical(&a).as_bytes());
        let digest = mac.finalize().into_bytes();
        assert_eq!(
            HouseholdKeyer::new(b"secret").key(&a).as_str(),
            hex::encode(&digest[..16])
        );
    }

    #[test]
    fn key_depends_on_the_secret() {
        let a = addr("1234AB", 1, None);
        assert_ne!(
            HouseholdKeyer::new(b"one").key(&a),
            HouseholdKeyer::new(b"two").key(&a)
        );
    }
}
