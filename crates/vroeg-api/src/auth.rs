//! Bearer-token authentication for the case API.
//!
//! Tokens are configured by their SHA-256 hash, never in clear, and each
//! belongs to one wijkteam or to the admin role. A request presents the
//! token; the API hashes it and looks the hash up. A missing, malformed or
//! unknown token is answered 401, with nothing about why.
//!
//! This module must not log tokens or their hashes.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// What a token may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// One wijkteam: only its own cases.
    Team(String),
    /// Every case, and the audit log.
    Admin,
}

impl Role {
    /// The role as the audit log names it: the team, or `admin`.
    pub fn name(&self) -> &str {
        match self {
            Role::Team(t) => t,
            Role::Admin => "admin",
        }
    }

    /// Whether this role may see a case of `team`.
    pub fn sees(&self, team: &str) -> bool {
        match self {
            Role::Team(t) => t == team,
            Role::Admin => true,
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
    by_hash: HashMap<[u8; 32], Caller>,
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
            if let Some(other) = by_hash.insert(hash, caller) {
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

    /// The caller a presented token belongs to, if any.
    pub fn caller(&self, token: &str) -> Option<&Caller> {
        self.by_hash.get(&hash_token(token))
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
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
            tokens.caller("t-noord").unwrap().role,
            Role::Team("noord".into())
        );
        assert_eq!(tokens.caller("t-admin").unwrap().role, Role::Admin);
        assert!(tokens.caller("t-zuid").is_none());
        assert!(tokens.caller(&hex::encode(hash_token("t-noord"))).is_none());
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
