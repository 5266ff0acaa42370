//! The OpenWhisk API's key (`interface.md`, "Keys the host owns"): `ROOT/state/openwhisk.auth`
//! holding `UUID:KEY` as OpenWhisk's `AUTH` in `.wskprops`, made at the first start (0600) and
//! kept. A request presents it as HTTP Basic credentials; the comparison takes the same time
//! whatever the presented bytes are.

use std::path::Path;

/// The key: `uuid` is the subject activations name, `secret` the rest.
#[derive(Clone, PartialEq, Eq)]
pub struct WhiskKey {
    pub uuid: String,
    secret: String,
}

impl std::fmt::Debug for WhiskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("WhiskKey")
            .field("uuid", &self.uuid)
            .finish_non_exhaustive()
    }
}

impl WhiskKey {
    /// A fresh key: a UUID and 64 letters and digits (as OpenWhisk's own keys).
    fn generate() -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut secret = String::with_capacity(64);
        while secret.len() < 64 {
            for b in uuid::Uuid::new_v4().as_bytes() {
                // 248 = 4 × 62: no bias.
                if *b < 248 && secret.len() < 64 {
                    secret.push(char::from(ALPHABET[usize::from(b % 62)]));
                }
            }
        }
        Self {
            uuid: uuid::Uuid::new_v4().to_string(),
            secret,
        }
    }

    /// `UUID:KEY`, what `wsk --auth` and the npm client's `api_key` take.
    pub fn auth(&self) -> String {
        format!("{}:{}", self.uuid, self.secret)
    }

    fn parse(text: &str) -> Option<Self> {
        let (uuid, secret) = text.trim().split_once(':')?;
        (!uuid.is_empty() && !secret.is_empty()).then(|| Self {
            uuid: uuid.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// Whether `presented` (decoded Basic credentials) is this key, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        lambkin_proto::lambda::sigv4::constant_time_eq(self.auth().as_bytes(), presented.as_bytes())
    }
}

/// The key in `path`, made there (owner-only) at the first start.
pub fn load_or_create(path: &Path) -> std::io::Result<WhiskKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => WhiskKey::parse(&text).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold UUID:KEY", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = WhiskKey::generate();
            crate::layout::write_private(path, format!("{}\n", key.auth()).as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_owner_only_and_compared_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openwhisk.auth");
        let key = load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_create(&path).unwrap(), key, "kept across starts");
        let auth = key.auth();
        assert_eq!(auth.split_once(':').unwrap().1.len(), 64);
        assert!(key.matches(&auth));
        assert!(!key.matches(&auth[..auth.len() - 1]));
        assert!(!key.matches(&format!("{auth}x")));
        assert!(!key.matches(""));
        assert!(!format!("{key:?}").contains(auth.split_once(':').unwrap().1));
    }
}
