//! Inbox sessions: who signed in, with what, and the form token.
//!
//! A session is created by a sign-in, which turns a [`Credential`] into a
//! [`Caller`]. Today the only credential is a team token (checked against
//! the API's token set); every request checks it again, so a token revoked
//! by a reload or past its last day ends its sessions at once. An OIDC
//! sign-in would add a credential (the identity provider's subject and the
//! expiry of its ID token) and a sign-in route that creates the same
//! session: the pages, the form tokens and the audit do not change.
//!
//! Sessions live in memory: a restart signs everyone out. The session id
//! and the form (CSRF) token are 256 random bits each. Neither is logged.

use std::collections::HashMap;
use std::sync::Mutex;

use vroeg_core::time::Millis;

use crate::auth::{Caller, Tokens};

/// The session cookie's name.
pub const COOKIE: &str = "vroeg_sessie";

/// How a session's holder proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A configured API token, by its SHA-256.
    Token([u8; 32]),
}

impl Credential {
    /// The caller this credential stands for at `now`, if it still works.
    pub fn caller(&self, tokens: &Tokens, now: Millis) -> Option<Caller> {
        match self {
            Credential::Token(hash) => tokens.caller_hashed(hash, now).cloned(),
        }
    }
}

/// Feedback sent from the inbox that the case page shows as pending until
/// the read model has the engine's verdict on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub zaak_id: String,
    pub feedback_id: String,
    /// `contactpoging`, `resultaat`, ...
    pub soort: &'static str,
}

/// One signed-in holder.
#[derive(Clone, Debug)]
pub struct Session {
    pub caller: Caller,
    pub credential: Credential,
    /// The form token every POST must carry.
    pub csrf: String,
    pub last_seen: Millis,
    pub pending: Vec<Pending>,
    /// A one-time message for the next page ("Contactpoging verstuurd").
    pub flash: Option<String>,
}

/// Every session, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// 256 random bits as hex.
pub fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

/// Compare two secrets without an early exit on the first difference.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start a session; its id, or `None` if no randomness was available.
    pub fn create(&self, caller: Caller, credential: Credential, now: Millis) -> Option<String> {
        let id = random_token()?;
        let session = Session {
            caller,
            credential,
            csrf: random_token()?,
            last_seen: now,
            pending: Vec::new(),
            flash: None,
        };
        self.lock().insert(id.clone(), session);
        Some(id)
    }

    /// The session `id` at `now`, touched: not when it was idle for longer
    /// than `idle`, nor when its credential no longer works (then it is
    /// removed). The caller is taken afresh from the credential.
    pub fn get(&self, id: &str, tokens: &Tokens, now: Millis, idle: Millis) -> Option<Session> {
        let mut map = self.lock();
        map.retain(|_, s| now - s.last_seen <= idle);
        let session = map.get_mut(id)?;
        let Some(caller) = session.credential.caller(tokens, now) else {
            map.remove(id);
            return None;
        };
        session.caller = caller;
        session.last_seen = now;
        Some(session.clone())
    }

    /// Change a live session.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Session)) {
        if let Some(s) = self.lock().get_mut(id) {
            change(s);
        }
    }

    /// End a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{hash_token, Role, TokenEntry};

    fn tokens(names: &[&str]) -> Tokens {
        let entries: Vec<TokenEntry> = names
            .iter()
            .map(|n| TokenEntry {
                name: (*n).into(),
                sha256: hex::encode(hash_token(n)),
                role: Role::Team("noord".into()),
                expires: None,
            })
            .collect();
        Tokens::new(&entries).unwrap()
    }

    #[test]
    fn a_session_ends_when_idle_signed_out_or_its_token_is_revoked() {
        let sessions = Sessions::default();
        let all = tokens(&["a", "b"]);
        let caller = |n: &str| all.caller(n, 0).unwrap().clone();
        let a = sessions
            .create(caller("a"), Credential::Token(hash_token("a")), 0)
            .unwrap();
        let b = sessions
            .create(caller("b"), Credential::Token(hash_token("b")), 0)
            .unwrap();
        assert_ne!(a, b);
        // Touched at 50, so alive at 150 with an idle limit of 100.
        assert!(sessions.get(&a, &all, 50, 100).is_some());
        assert!(sessions.get(&a, &all, 150, 100).is_some());
        // b was last seen at 0: idle.
        assert!(sessions.get(&b, &all, 150, 100).is_none());
        // Revoking a's token (a reload without it) ends its session.
        assert!(sessions.get(&a, &tokens(&["b"]), 160, 100).is_none());
        assert!(sessions.get(&a, &all, 170, 100).is_none(), "removed");
        let c = sessions
            .create(caller("a"), Credential::Token(hash_token("a")), 200)
            .unwrap();
        sessions.remove(&c);
        assert!(sessions.get(&c, &all, 200, 100).is_none());
        assert!(sessions.is_empty());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
