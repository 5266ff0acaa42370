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
        let secret = crate::secret::from_alphabet(ALPHABET, 64);
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

    /// HMAC-SHA256 of `message` under the key's secret, hex: what a stored non-blocking
    /// activation carries, so that an `Event` made through the Lambda API (by a component,
    /// say) cannot pass for one and write an activation record.
    pub fn seal(&self, message: &str) -> String {
        hmac_sha256(self.secret.as_bytes(), message.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `seal` is [`WhiskKey::seal`] of `message`, in constant time.
    pub fn sealed(&self, message: &str, seal: &str) -> bool {
        lambkin_proto::lambda::sigv4::constant_time_eq(
            self.seal(message).as_bytes(),
            seal.as_bytes(),
        )
    }

    /// Whether `presented` (decoded Basic credentials) is this key, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        lambkin_proto::lambda::sigv4::constant_time_eq(self.auth().as_bytes(), presented.as_bytes())
    }
}

/// RFC 2104's HMAC over SHA-256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| -> [u8; BLOCK] { block.map(|b| b ^ byte) };
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
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

    #[test]
    fn seals_are_rfc_4231_hmac_sha256() {
        let hex = |b: [u8; 32]| -> String { b.iter().map(|b| format!("{b:02x}")).collect() };
        assert_eq!(
            hex(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        let dir = tempfile::tempdir().unwrap();
        let key = load_or_create(&dir.path().join("k")).unwrap();
        let seal = key.seal("id-1");
        assert!(key.sealed("id-1", &seal));
        assert!(!key.sealed("id-2", &seal));
        assert!(!key.sealed("id-1", ""));
    }
}
