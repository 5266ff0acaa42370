//! Per-component IPC tokens (`SVCUID`, `greengrass-ipc.md` §1.1): one random token per
//! component start, kept in memory and handed to the component's processes in their
//! environment; revoked when the component is removed or replaced. The token a connection
//! presents names its principal.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use lambkin_proto::recipe::ComponentName;

/// The 32 symbols of the nucleus's tokens (RFC 4648 base32), upper case.
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// 26 symbols of 5 bits: 130 random bits (the nucleus uses 16 symbols, 80 bits; longer costs
/// nothing).
const TOKEN_SYMBOLS: usize = 26;

/// The token map, shared by the engine (which hands tokens out) and the IPC server (which
/// looks them up). Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    inner: Arc<Mutex<Inner>>,
    /// Bumped at every revocation: connections authenticated with a token look again.
    revocations: Arc<tokio::sync::watch::Sender<u64>>,
}

#[derive(Debug, Default)]
struct Inner {
    by_token: HashMap<String, ComponentName>,
    by_component: HashMap<ComponentName, String>,
}

impl Tokens {
    pub fn new() -> Self {
        Self::default()
    }

    /// The component's token, made on first use; the same one for every later start of the
    /// component while the host runs.
    pub fn token_for(&self, component: &ComponentName) -> String {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(token) = inner.by_component.get(component) {
            return token.clone();
        }
        let token = loop {
            let candidate = random_token();
            if !inner.by_token.contains_key(&candidate) {
                break candidate;
            }
        };
        inner.by_token.insert(token.clone(), component.clone());
        inner.by_component.insert(component.clone(), token.clone());
        token
    }

    /// A fresh token for the component: its previous one, if any, stops working. The engine
    /// calls this each time it starts the component for a deployment, so a redeployed or
    /// replaced component never inherits the token its predecessor handed around.
    pub fn renew(&self, component: &ComponentName) -> String {
        self.revoke(component);
        self.token_for(component)
    }

    /// Forgets the component's token: the IPC server and the token exchange service refuse it
    /// from now on. For a component stopped for good or removed.
    pub fn revoke(&self, component: &ComponentName) {
        let revoked = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            match inner.by_component.remove(component) {
                Some(token) => inner.by_token.remove(&token).is_some(),
                None => false,
            }
        };
        if revoked {
            self.revocations.send_modify(|n| *n += 1);
        }
    }

    /// Changes whenever a token is revoked: an authenticated connection then checks that its
    /// token still stands (see [`Tokens::component`]) and closes if not.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// The component a token was given to.
    pub fn component(&self, token: &str) -> Option<ComponentName> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_token
            .get(token)
            .cloned()
    }
}

/// A token of [`TOKEN_SYMBOLS`] random symbols.
fn random_token() -> String {
    crate::secret::from_alphabet(ALPHABET, TOKEN_SYMBOLS)
}

/// What a component's processes need to reach the IPC server: the socket's absolute path and
/// the token map.
#[derive(Debug, Clone)]
pub struct ComponentIpc {
    pub socket: PathBuf,
    pub tokens: Tokens,
}

impl ComponentIpc {
    /// A fresh token for `component` (see [`Tokens::renew`]).
    pub fn renew(&self, component: &str) {
        if let Ok(name) = ComponentName::parse(component) {
            self.tokens.renew(&name);
        }
    }

    /// Revokes `component`'s token (see [`Tokens::revoke`]).
    pub fn revoke(&self, component: &str) {
        if let Ok(name) = ComponentName::parse(component) {
            self.tokens.revoke(&name);
        }
    }

    /// The IPC variables of §1.1 for `component`. A name that is not a component name gets
    /// none (it cannot have been deployed).
    pub fn env_for(&self, component: &str) -> BTreeMap<String, String> {
        let Ok(name) = ComponentName::parse(component) else {
            return BTreeMap::new();
        };
        let token = self.tokens.token_for(&name);
        let socket = self.socket.display().to_string();
        [
            ("SVCUID", token.clone()),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", token),
            (
                "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
                socket.clone(),
            ),
            ("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH", socket),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_stable_per_component_and_map_back() {
        let tokens = Tokens::new();
        let a = ComponentName::parse("com.example.A").unwrap();
        let b = ComponentName::parse("com.example.B").unwrap();
        let ta = tokens.token_for(&a);
        let tb = tokens.token_for(&b);
        assert_eq!(ta.len(), TOKEN_SYMBOLS);
        assert!(ta.bytes().all(|c| ALPHABET.contains(&c)));
        assert_ne!(ta, tb);
        assert_eq!(tokens.token_for(&a), ta);
        assert_eq!(tokens.component(&ta), Some(a));
        assert_eq!(tokens.component("WRONGTOKEN"), None);
        assert_ne!(random_token(), random_token());
    }

    #[test]
    fn env_names_the_socket_and_the_token_twice() {
        let ipc = ComponentIpc {
            socket: PathBuf::from("/r/ipc.socket"),
            tokens: Tokens::new(),
        };
        let env = ipc.env_for("com.example.A");
        assert_eq!(env["SVCUID"], env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]);
        assert_eq!(
            env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"],
            "/r/ipc.socket"
        );
        assert_eq!(
            env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH"],
            "/r/ipc.socket"
        );
    }
}
