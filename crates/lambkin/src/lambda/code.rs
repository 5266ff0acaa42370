//! A function's code: the zip as uploaded, unpacked into its own directory (one per code
//! hash, so running instances keep their files while new ones get the update), and checked
//! for the entry point its runtime will need before the function is accepted.

use std::io::{Cursor, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use lambkin_proto::lambda::function::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("ZipFile is not valid base64: {0}")]
    NotBase64(base64::DecodeError),
    #[error("could not unzip uploaded file: {0}")]
    BadZip(String),
    #[error("zip entry {0:?} would be written outside the function's directory")]
    UnsafePath(String),
    #[error("{0}")]
    MissingEntryPoint(String),
    #[error("cannot store the function's code: {0}")]
    Io(#[from] std::io::Error),
}

/// An uploaded zip, decoded and hashed.
#[derive(Debug)]
pub struct CodeZip {
    pub bytes: Vec<u8>,
    /// Base64 of the SHA-256 of the zip, as Lambda reports `CodeSha256`.
    pub sha256_base64: String,
    /// Hex of the same hash: the directory name.
    pub sha256_hex: String,
}

impl CodeZip {
    pub fn from_base64(zip_file: &str) -> Result<Self, CodeError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(zip_file.trim())
            .map_err(CodeError::NotBase64)?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let digest = Sha256::digest(&bytes);
        let sha256_hex = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            sha256_base64: base64::engine::general_purpose::STANDARD.encode(digest),
            sha256_hex,
            bytes,
        }
    }

    /// Unpacks into `dir/<hash>` (written beside and renamed into place, so a crash never
    /// leaves half a directory under the final name) and returns that directory.
    pub fn unpack_into(&self, dir: &Path) -> Result<PathBuf, CodeError> {
        let target = dir.join(&self.sha256_hex);
        if target.is_dir() {
            return Ok(target);
        }
        std::fs::create_dir_all(dir)?;
        let staging = dir.join(format!(".unpack-{}", uuid::Uuid::new_v4().simple()));
        let result = unpack(&self.bytes, &staging).and_then(|()| {
            std::fs::rename(&staging, &target)?;
            Ok(())
        });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result.map(|()| target)
    }
}

fn enclosed(name: &str) -> Result<PathBuf, CodeError> {
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(CodeError::UnsafePath(name.to_owned()))
            }
        }
    }
    Ok(out)
}

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;

/// Unpacks a zip into `dest`; no entry or link may lead outside it.
pub fn unpack(bytes: &[u8], dest: &Path) -> Result<(), CodeError> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| CodeError::BadZip(e.to_string()))?;
    std::fs::create_dir_all(dest)?;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| CodeError::BadZip(e.to_string()))?;
        let relative = enclosed(entry.name())?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let path = dest.join(&relative);
        let mode = entry.unix_mode();
        if entry.is_dir() {
            std::fs::create_dir_all(&path)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if mode.is_some_and(|m| m & S_IFMT == S_IFLNK) {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .map_err(|e| CodeError::BadZip(e.to_string()))?;
            // A link may point anywhere inside the code, never out of it.
            let resolved = relative.parent().unwrap_or(Path::new("")).join(&target);
            if Path::new(&target).is_absolute() || enclosed_lexically(&resolved).is_none() {
                return Err(CodeError::UnsafePath(format!(
                    "{} -> {target}",
                    entry.name()
                )));
            }
            std::os::unix::fs::symlink(&target, &path)?;
            continue;
        }
        let mut out = std::fs::File::create(&path)?;
        std::io::copy(&mut entry, &mut out).map_err(|e| CodeError::BadZip(e.to_string()))?;
        // Files keep their permission bits; zips made without them get rw-r--r--.
        let perm = mode.map(|m| m & 0o777).filter(|m| *m != 0).unwrap_or(0o644);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(perm | 0o600))?;
    }
    Ok(())
}

/// Resolves `..` lexically; `None` when the path climbs above its start.
fn enclosed_lexically(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Checks that the unpacked code has what the runtime will start: an executable `bootstrap`
/// for `provided*`, the handler's module for Python and Node.
pub fn check_entry_point(
    code_dir: &Path,
    runtime: &Runtime,
    handler: Option<&str>,
) -> Result<(), CodeError> {
    let missing = |msg: String| Err(CodeError::MissingEntryPoint(msg));
    match runtime {
        Runtime::Provided(id) => {
            let bootstrap = code_dir.join("bootstrap");
            match std::fs::metadata(&bootstrap) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
                Ok(m) if m.is_file() => missing(format!(
                    "the code's bootstrap is not executable (mode {:o}); runtime {id} runs it, so zip it with its execute permission (chmod 755 bootstrap)",
                    m.permissions().mode() & 0o777
                )),
                _ => missing(format!(
                    "the code has no file named bootstrap at its root; runtime {id} runs it"
                )),
            }
        }
        Runtime::Python { .. } | Runtime::Node { .. } => {
            let Some(handler) = handler else {
                return missing(format!("runtime {} needs a Handler", runtime.id()));
            };
            let Some((module, function)) = handler.rsplit_once('.') else {
                return missing(format!(
                    "handler {handler:?} must be MODULE.FUNCTION, e.g. app.handler"
                ));
            };
            if module.is_empty() || function.is_empty() {
                return missing(format!(
                    "handler {handler:?} must be MODULE.FUNCTION, e.g. app.handler"
                ));
            }
            let module_path = enclosed(module).map_err(|_| {
                CodeError::MissingEntryPoint(format!(
                    "handler {handler:?} names a module outside the code"
                ))
            })?;
            let candidates: Vec<PathBuf> = match runtime {
                Runtime::Python { .. } => {
                    let dotted = PathBuf::from(module.replace('.', "/"));
                    vec![
                        module_path.with_extension("py"),
                        dotted.with_extension("py"),
                        dotted.join("__init__.py"),
                        module_path.with_extension("pyc"),
                    ]
                }
                _ => ["js", "mjs", "cjs"]
                    .iter()
                    .map(|ext| PathBuf::from(format!("{module}.{ext}")))
                    .collect(),
            };
            if candidates.iter().any(|c| code_dir.join(c).is_file()) {
                Ok(())
            } else {
                let names: Vec<String> =
                    candidates.iter().map(|c| c.display().to_string()).collect();
                missing(format!(
                    "handler {handler:?} names module {module:?}, but the code has none of {}",
                    names.join(", ")
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut buf);
        for (name, data, mode) in entries {
            let opts = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
        buf.into_inner()
    }

    #[test]
    fn unpacks_with_permissions_and_checks_bootstrap() {
        let tmp = tempfile::tempdir().unwrap();
        let zip = CodeZip::from_bytes(zip_of(&[
            ("bootstrap", b"#!/bin/sh\n", 0o755),
            ("lib/a.txt", b"a", 0o644),
        ]));
        let dir = zip.unpack_into(tmp.path()).unwrap();
        assert!(dir.join("lib/a.txt").is_file());
        check_entry_point(&dir, &Runtime::Provided("provided".into()), None).unwrap();

        let zip = CodeZip::from_bytes(zip_of(&[("bootstrap", b"#!/bin/sh\n", 0o644)]));
        let dir = zip.unpack_into(tmp.path()).unwrap();
        let err = check_entry_point(&dir, &Runtime::Provided("provided".into()), None).unwrap_err();
        assert!(err.to_string().contains("not executable"), "{err}");
    }

    #[test]
    fn refuses_entries_that_escape() {
        let tmp = tempfile::tempdir().unwrap();
        let zip = CodeZip::from_bytes(zip_of(&[("../evil", b"x", 0o644)]));
        assert!(matches!(
            zip.unpack_into(tmp.path()),
            Err(CodeError::UnsafePath(_))
        ));
        assert!(!tmp.path().join("evil").exists());
        // Nothing half-unpacked is left behind.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn refuses_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        let zip = CodeZip::from_bytes(b"not a zip".to_vec());
        assert!(matches!(
            zip.unpack_into(tmp.path()),
            Err(CodeError::BadZip(_))
        ));
        assert!(CodeZip::from_base64("%%%").is_err());
    }

    #[test]
    fn finds_handler_modules() {
        let tmp = tempfile::tempdir().unwrap();
        let zip = CodeZip::from_bytes(zip_of(&[
            ("src/app.py", b"", 0o644),
            ("index.mjs", b"", 0o644),
        ]));
        let dir = zip.unpack_into(tmp.path()).unwrap();
        let py = Runtime::Python { minor: 11 };
        check_entry_point(&dir, &py, Some("src/app.handler")).unwrap();
        check_entry_point(&dir, &py, Some("src.app.handler")).unwrap();
        let err = check_entry_point(&dir, &py, Some("app.handler")).unwrap_err();
        assert!(err.to_string().contains("app.py"), "{err}");
        assert!(check_entry_point(&dir, &py, Some("nohandler")).is_err());
        check_entry_point(&dir, &Runtime::Node { major: 20 }, Some("index.handler")).unwrap();
        assert!(
            check_entry_point(&dir, &Runtime::Node { major: 20 }, Some("main.handler")).is_err()
        );
    }
}
