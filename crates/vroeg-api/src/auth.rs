//! Bearer-token authentication for the case API.
//!
//! Tokens are configured by their SHA-256 hash, never in clear, and each
//! belongs to one wijkteam, to the admin role, or to the read-only role. A
//! token may have an expiry day (the last Dutch day it works). A request
//! presents the token; the API hashes it and looks the hash up. A missing,
//! malformed, unknown or expired token is answered 401, with nothing about
//! why. The tokens are reloaded with the rules (SIGHUP, `POST
//! /admin/reload`): a revoked token stops working at once.
//!
//! This module must not log tokens or their hashes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use vroeg_core::time::{Day, Millis};

/// What a token may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// One wijkteam: only its own cases.
    Team(String),
    /// Every case, the audit log, the exports and the reload.
    Admin,
    /// Every case and the audit log, and nothing that changes anything:
    /// for auditors, and for testing the API against a live service.
    ReadOnly,
}

impl Role {
    /// The role as the audit log names it: the team, or `admin`.
    pub fn name(&self) -> &str {
        match self {
            Role::Team(t) => t,
            Role::Admin => "admin",
            Role::ReadOnly => "alleen_lezen",
        }
    }

    /// Whether this role may record feedback (on the cases it sees).
    pub fn writes(&self) -> bool {
        !matches!(self, Role::ReadOnly)
    }

    /// Whether this role may see a case of `team`.
    pub fn sees(&self, team: &str) -> bool {
        match self {
            Role::Team(t) => t == team,
            Role::Admin | Role::ReadOnly => true,
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name from the config (for the audit log).
    pub name: String,
    pub role: Role,
}

/// One configured token.
#[derive(Clone, Debug)]
pub struct TokenEntry {
    pub name: String,
    /// SHA-256 of the token, lowercase hex.
    pub sha256: String,
    pub role: Role,
    /// The last (Europe/Amsterdam) day the token works, if it expires.
    pub expires: Option<Day>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token {name:?}: sha256 must be 64 hexadecimal digits")]
    BadHash { name: String },
    #[error("token {name:?}: the same hash as token {other:?}")]
    DuplicateHash { name: String, other: String },
    #[error("token name {name:?} is used twice")]
    DuplicateName { name: String },
}

/// The configured tokens, by hash.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], (Caller, Option<Day>)>,
}

impl Tokens {
    /// Check and index the configured tokens; returns every problem.
    pub fn new(entries: &[TokenEntry]) -> Result<Tokens, Vec<TokenError>> {
        let mut by_hash = HashMap::new();
        let mut errors = Vec::new();
        let mut names: HashMap<&str, ()> = HashMap::new();
        for e in entries {
            if names.insert(&e.name, ()).is_some() {
                errors.push(TokenError::DuplicateName {
                    name: e.name.clone(),
                });
            }
            let mut hash = [0u8; 32];
            if e.sha256.len() != 64 || hex::decode_to_slice(&e.sha256, &mut hash).is_err() {
                errors.push(TokenError::BadHash {
                    name: e.name.clone(),
                });
                continue;
            }
            let caller = Caller {
                name: e.name.clone(),
                role: e.role.clone(),
            };
            if let Some((other, _)) = by_hash.insert(hash, (caller, e.expires)) {
                errors.push(TokenError::DuplicateHash {
                    name: e.name.clone(),
                    other: other.name,
                });
            }
        }
        if errors.is_empty() {
            Ok(Tokens { by_hash })
        } else {
            Err(errors)
        }
    }

    /// The caller a presented token belongs to at `now`, if any: not when
    /// the token expired (after the end of its last day, Dutch time).
    pub fn caller(&self, token: &str, now: Millis) -> Option<&Caller> {
        self.caller_hashed(&hash_token(token), now)
    }

    /// The caller of a token by its hash, at `now`: how a session signed
    /// in with a token checks, on every request, that the token still
    /// works (not revoked by a reload, not expired).
    pub fn caller_hashed(&self, hash: &[u8; 32], now: Millis) -> Option<&Caller> {
        let (caller, expires) = self.by_hash.get(hash)?;
        match expires {
            Some(last) if Day::local_of(now) > *last => None,
            _ => Some(caller),
        }
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// How many tokens have expired at `now`.
    pub fn expired(&self, now: Millis) -> usize {
        let today = Day::local_of(now);
        self.by_hash
            .values()
            .filter(|(_, e)| e.is_some_and(|last| today > last))
            .count()
    }
}

/// The tokens in force, replaced whole on a reload.
#[derive(Debug, Default)]
pub struct TokenSet(RwLock<Arc<Tokens>>);

impl TokenSet {
    pub fn new(tokens: Tokens) -> TokenSet {
        TokenSet(RwLock::new(Arc::new(tokens)))
    }

    pub fn get(&self) -> Arc<Tokens> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// From the next request on, only `tokens` work.
    pub fn set(&self, tokens: Tokens) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tokens);
    }
}

/// SHA-256 of a token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token (256 bits, hex) and its hash for the config.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = format!("vroeg_{}", hex::encode(bytes));
    let hash = hex::encode(hash_token(&token));
    Ok((token, hash))
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, token: &str, role: Role) -> TokenEntry {
        TokenEntry {
            name: name.into(),
            sha256: hex::encode(hash_token(token)),
            role,
            expires: None,
        }
    }

    #[test]
    fn tokens_resolve_by_hash_only() {
        let tokens = Tokens::new(&[
            entry("noord", "t-noord", Role::Team("noord".into())),
            entry("beheer", "t-admin", Role::Admin),
        ])
        .unwrap();
        assert_eq!(
            tokens.caller("t-noord", 0).unwrap().role,
            Role::Team("noord".into())
        );
        assert_eq!(tokens.caller("t-admin", 0).unwrap().role, Role::Admin);
        assert!(tokens.caller("t-zuid", 0).is_none());
        assert!(tokens
            .caller(&hex::encode(hash_token("t-noord")), 0)
            .is_none());
    }

    #[test]
    fn a_token_works_through_the_end_of_its_last_dutch_day() {
        let mut e = entry("tijdelijk", "t-tijd", Role::ReadOnly);
        e.expires = Day::parse("2026-11-30");
        let tokens = Tokens::new(&[e]).unwrap();
        let at = |t| vroeg_core::time::parse_rfc3339(t).unwrap();
        // 23:30 Dutch time on the last day (UTC+1 in winter).
        assert!(tokens
            .caller("t-tijd", at("2026-11-30T22:30:00Z"))
            .is_some());
        // 00:30 Dutch time the next day.
        assert!(tokens
            .caller("t-tijd", at("2026-11-30T23:30:00Z"))
            .is_none());
        assert_eq!(tokens.expired(at("2026-12-01T12:00:00Z")), 1);
    }

    #[test]
    fn every_config_problem_is_reported() {
        let mut bad = entry("a", "x", Role::Admin);
        bad.sha256 = "abc".into();
        let errors = Tokens::new(&[
            bad,
            entry("b", "same", Role::Admin),
            entry("c", "same", Role::Admin),
            entry("c", "other", Role::Admin),
        ])
        .unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn new_tokens_hash_to_their_config_entry() {
        let (token, hash) = new_token().unwrap();
        assert_eq!(hex::encode(hash_token(&token)), hash);
        assert_ne!(new_token().unwrap().0, token);
    }
}
