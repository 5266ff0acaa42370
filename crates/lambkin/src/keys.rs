//! Access keys in the AWS shared-credentials format (`interface.md`, "Keys the host owns"):
//! the host's own key in `ROOT/state/credentials` (profile `lambkin`), made at the first start
//! and kept, so the AWS CLI and SDKs sign for this host after one `export`; and the files that
//! hand a component its own key (see `api::access`).

use std::path::Path;

use base64::Engine;

/// The profile the host's key is filed under.
pub const PROFILE: &str = "lambkin";

/// An access key id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} has no [{PROFILE}] profile with aws_access_key_id and aws_secret_access_key")]
    Malformed { path: String },
}

impl AccessKey {
    /// A fresh random key: `LKIA` and 16 base-32 characters (the shape of an AWS key id), and
    /// a 40-character secret (240 random bits).
    pub fn generate() -> Self {
        const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let id = crate::secret::from_alphabet(BASE32, 16);
        Self {
            access_key_id: format!("LKIA{id}"),
            secret: base64::engine::general_purpose::STANDARD.encode(crate::secret::bytes(30)),
        }
    }

    /// The key as a shared-credentials profile.
    pub fn to_profile(&self, profile: &str) -> String {
        format!(
            "[{profile}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            self.access_key_id, self.secret
        )
    }

    /// The key of `profile` in a shared-credentials (or config) file's text.
    pub fn from_profile(text: &str, profile: &str) -> Option<Self> {
        Some(Self {
            access_key_id: profile_setting(text, profile, "aws_access_key_id")?,
            secret: profile_setting(text, profile, "aws_secret_access_key")?,
        })
    }
}

/// The value of `name` in `profile` of a shared-credentials (or config) file's text (the last
/// one when it is there twice), unless empty.
pub fn profile_setting(text: &str, profile: &str, name: &str) -> Option<String> {
    let mut in_profile = false;
    let mut value = None;
    for line in text.lines().map(str::trim) {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            in_profile = section == profile || section == format!("profile {profile}");
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == name {
                value = Some(v.trim().to_owned());
            }
        }
    }
    value.filter(|s| !s.is_empty())
}

/// The host's key: read from `path`, or made and written there (owner-only) at the first start.
pub fn load_or_create(path: &Path) -> Result<AccessKey, KeyError> {
    match load(path) {
        Ok(key) => Ok(key),
        Err(KeyError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let key = AccessKey::generate();
            write_private(path, key.to_profile(PROFILE).as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// The host's key from `path` (what `lambkin` subcommands sign with).
pub fn load(path: &Path) -> Result<AccessKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    AccessKey::from_profile(&text, PROFILE).ok_or_else(|| KeyError::Malformed {
        path: path.display().to_string(),
    })
}

/// Writes `content` to `path`, owner-only (`layout::write_private`).
pub fn write_private(path: &Path, content: &[u8]) -> Result<(), KeyError> {
    write_private_owned(path, content, None)
}

/// As [`write_private`], the file given to `owner` (uid, gid) before it appears at `path`.
pub fn write_private_owned(
    path: &Path,
    content: &[u8],
    owner: Option<(u32, u32)>,
) -> Result<(), KeyError> {
    crate::layout::write_private_owned(path, content, owner).map_err(|source| KeyError::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_host_key_is_made_once_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let key = load_or_create(&path).unwrap();
        assert!(key.access_key_id.starts_with("LKIA") && key.access_key_id.len() == 20);
        assert_eq!(key.secret.len(), 40);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_create(&path).unwrap(), key);
        assert_ne!(AccessKey::generate(), key);
        assert!(!format!("{key:?}").contains(&key.secret));
    }

    #[test]
    fn profiles_are_found_by_name_in_either_file() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\
                    [profile lambkin]\naws_access_key_id = C\n aws_secret_access_key=D \n";
        let key = AccessKey::from_profile(text, "lambkin").unwrap();
        assert_eq!(
            (key.access_key_id.as_str(), key.secret.as_str()),
            ("C", "D")
        );
        assert!(AccessKey::from_profile("[lambkin]\naws_access_key_id = C\n", "lambkin").is_none());
    }

    #[test]
    fn a_planted_link_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let path = dir.path().join("credentials");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        // A component owns its work directory, so it can plant a link where the staging file
        // goes, too: still never written through.
        let staging = dir.path().join("credentials.new");
        std::os::unix::fs::symlink(&victim, &staging).unwrap();
        write_private(&path, b"newer").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "newer");
    }
}
