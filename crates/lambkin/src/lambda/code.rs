//! A function's code: the zip as uploaded, unpacked into its own directory (one per code
//! hash, so running instances keep their files while new ones get the update), and checked
//! for the entry point its runtime will need before the function is accepted.

use std::io::{Cursor, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
    #[error("{0}")]
    TooLarge(String),
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

/// What an archive may unpack to: AWS Lambda's limits where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of all files together, unpacked (AWS: 250 MB for a function and its layers).
    pub unpacked_bytes: u64,
    /// Entries (files, directories, links).
    pub entries: usize,
    /// Unpacked bytes per compressed byte, checked past 16 MiB of unpacked data.
    pub ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            unpacked_bytes: 250 * 1000 * 1000,
            entries: 20_000,
            ratio: 200,
        }
    }
}

/// Below this many unpacked bytes the ratio is not checked: small, very regular files (a
/// zeroed buffer, generated tables) compress far past any ratio and harm no one.
const RATIO_FLOOR_BYTES: u64 = 16 * 1024 * 1024;

/// One entry as the archive declares it, checked before anything is written.
#[derive(Debug)]
struct Planned {
    index: usize,
    relative: PathBuf,
    kind: EntryKind,
}

#[derive(Debug)]
enum EntryKind {
    Dir,
    File { mode: u32 },
    Link { target: String },
}

/// Unpacks a zip into `dest` (a directory that does not exist yet or is empty) within the
/// default [`Limits`].
pub fn unpack(bytes: &[u8], dest: &Path) -> Result<(), CodeError> {
    unpack_within(bytes, dest, Limits::default())
}

/// Unpacks a zip into `dest`: no entry may lead outside it, none is written through a link,
/// no link resolves outside it (a link may not point at or through another link, so each
/// link's lexical target is where it really leads), and the archive stays within `limits`,
/// counted on the bytes actually inflated, not on what the archive declares.
pub fn unpack_within(bytes: &[u8], dest: &Path, limits: Limits) -> Result<(), CodeError> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| CodeError::BadZip(e.to_string()))?;
    if archive.len() > limits.entries {
        return Err(CodeError::TooLarge(format!(
            "the archive has {} entries, over the limit of {}",
            archive.len(),
            limits.entries
        )));
    }
    let planned = plan(&mut archive)?;
    std::fs::create_dir_all(dest)?;
    let compressed = bytes.len() as u64;
    let mut written: u64 = 0;
    for entry in &planned {
        let path = dest.join(&entry.relative);
        if let Some(parent) = entry.relative.parent() {
            make_dirs(dest, parent)?;
        }
        match &entry.kind {
            EntryKind::Dir => make_dirs(dest, &entry.relative)?,
            EntryKind::Link { target } => std::os::unix::fs::symlink(target, &path)?,
            EntryKind::File { mode } => {
                let mut file = archive
                    .by_index(entry.index)
                    .map_err(|e| CodeError::BadZip(e.to_string()))?;
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&path)?;
                inflate(&mut file, &mut out, &limits, &mut written, compressed)?;
                // Files keep their permission bits; zips made without them get rw-r--r--.
                let perm = Some(*mode).filter(|m| *m != 0).unwrap_or(0o644);
                out.set_permissions(std::fs::Permissions::from_mode(perm | 0o600))?;
            }
        }
    }
    Ok(())
}

/// Inflates one file of an archive of `compressed` bytes into `out`, counting the bytes
/// actually inflated into `written` against `limits` (size, and ratio past 16 MiB).
fn inflate(
    file: &mut impl Read,
    out: &mut impl std::io::Write,
    limits: &Limits,
    written: &mut u64,
    compressed: u64,
) -> Result<(), CodeError> {
    let room = limits.unpacked_bytes - *written;
    let copied = std::io::copy(&mut file.take(room + 1), out).map_err(|e| match e.kind() {
        std::io::ErrorKind::StorageFull => CodeError::Io(e),
        _ => CodeError::BadZip(e.to_string()),
    })?;
    *written += copied;
    if copied > room {
        return Err(CodeError::TooLarge(format!(
            "the archive unpacks to more than the limit of {} bytes",
            limits.unpacked_bytes
        )));
    }
    if *written > RATIO_FLOOR_BYTES && *written > compressed.saturating_mul(limits.ratio) {
        return Err(CodeError::TooLarge(format!(
            "the archive unpacks to over {} times its {compressed} bytes (a compression ratio limit)",
            limits.ratio
        )));
    }
    Ok(())
}

/// One entry of an archive read into memory by [`read_within`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveEntry {
    Dir,
    /// `mode`: the permission bits the archive gives (0 when it gives none).
    File {
        mode: u32,
        content: Vec<u8>,
    },
    Link {
        target: String,
    },
}

/// Reads a zip into memory under the same rules as [`unpack_within`] (the same plan: no
/// escape, no entry through a link, no link out or to a link, no duplicate; the same limits on
/// the bytes actually inflated), for a caller that repacks it (an OpenWhisk action's zip).
/// Entries keep the archive's order; paths are relative and clean.
pub fn read_within(
    bytes: &[u8],
    limits: Limits,
) -> Result<Vec<(PathBuf, ArchiveEntry)>, CodeError> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| CodeError::BadZip(e.to_string()))?;
    if archive.len() > limits.entries {
        return Err(CodeError::TooLarge(format!(
            "the archive has {} entries, over the limit of {}",
            archive.len(),
            limits.entries
        )));
    }
    let planned = plan(&mut archive)?;
    let compressed = bytes.len() as u64;
    let mut written: u64 = 0;
    let mut entries = Vec::with_capacity(planned.len());
    for entry in planned {
        let read = match entry.kind {
            EntryKind::Dir => ArchiveEntry::Dir,
            EntryKind::Link { target } => ArchiveEntry::Link { target },
            EntryKind::File { mode } => {
                let mut file = archive
                    .by_index(entry.index)
                    .map_err(|e| CodeError::BadZip(e.to_string()))?;
                let mut content = Vec::new();
                inflate(&mut file, &mut content, &limits, &mut written, compressed)?;
                ArchiveEntry::File { mode, content }
            }
        };
        entries.push((entry.relative, read));
    }
    Ok(entries)
}

/// Reads the central directory and refuses, before anything is written: a path out of the
/// target, a duplicate, an entry under a link, a link out of the target or to a link.
fn plan<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
) -> Result<Vec<Planned>, CodeError> {
    let mut planned = Vec::with_capacity(archive.len());
    let mut seen = std::collections::HashSet::new();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| CodeError::BadZip(e.to_string()))?;
        let relative = enclosed(entry.name())?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let mode = entry.unix_mode();
        let kind = if entry.is_dir() {
            EntryKind::Dir
        } else if mode.is_some_and(|m| m & S_IFMT == S_IFLNK) {
            if entry.size() > 4096 {
                return Err(CodeError::UnsafePath(format!(
                    "{}: a link target of {} bytes",
                    entry.name(),
                    entry.size()
                )));
            }
            let mut target = String::new();
            (&mut entry)
                .take(4096)
                .read_to_string(&mut target)
                .map_err(|e| CodeError::BadZip(e.to_string()))?;
            EntryKind::Link { target }
        } else {
            EntryKind::File {
                mode: mode.map_or(0, |m| m & 0o777),
            }
        };
        if !seen.insert(relative.clone()) && !matches!(kind, EntryKind::Dir) {
            return Err(CodeError::UnsafePath(format!(
                "{} appears twice in the archive",
                entry.name()
            )));
        }
        planned.push(Planned {
            index,
            relative,
            kind,
        });
    }
    let links: std::collections::HashSet<&Path> = planned
        .iter()
        .filter(|p| matches!(p.kind, EntryKind::Link { .. }))
        .map(|p| p.relative.as_path())
        .collect();
    // The first link among `path`'s ancestors (and `path` itself when `including_self`).
    let through_link = |path: &Path, including_self: bool| -> Option<PathBuf> {
        let mut prefix = PathBuf::new();
        let parts: Vec<_> = path.components().collect();
        for (i, part) in parts.iter().enumerate() {
            prefix.push(part);
            let is_self = i + 1 == parts.len();
            if (!is_self || including_self) && links.contains(prefix.as_path()) {
                return Some(prefix);
            }
        }
        None
    };
    for p in &planned {
        if let Some(link) = through_link(&p.relative, false) {
            return Err(CodeError::UnsafePath(format!(
                "{} would be written through the link {}",
                p.relative.display(),
                link.display()
            )));
        }
        if let EntryKind::Link { target } = &p.kind {
            let unsafe_link =
                || CodeError::UnsafePath(format!("{} -> {target}", p.relative.display()));
            let resolved = p.relative.parent().unwrap_or(Path::new("")).join(target);
            if Path::new(target).is_absolute() {
                return Err(unsafe_link());
            }
            if enclosed_lexically(&resolved).is_none() {
                return Err(unsafe_link());
            }
            // A link through a link resolves somewhere its own text does not say: the chain
            // `l1 -> .`, `l2 -> l1/..` is inside lexically and outside for real. Walking the
            // target step by step, no step may be a link.
            let mut walked = p.relative.parent().unwrap_or(Path::new("")).to_path_buf();
            for part in Path::new(target).components() {
                match part {
                    Component::Normal(n) => walked.push(n),
                    Component::ParentDir => {
                        walked.pop();
                    }
                    _ => continue,
                }
                if links.contains(walked.as_path()) {
                    return Err(CodeError::UnsafePath(format!(
                        "{} -> {target} goes through the link {} (links to links are refused)",
                        p.relative.display(),
                        walked.display()
                    )));
                }
            }
        }
    }
    Ok(planned)
}

/// Creates `relative`'s directories under `dest` one by one, refusing any that exists as
/// something other than a directory (a link above all).
fn make_dirs(dest: &Path, relative: &Path) -> Result<(), CodeError> {
    let mut path = dest.to_path_buf();
    for part in relative.components() {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(CodeError::UnsafePath(format!(
                    "{} is not a directory",
                    relative.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(&path)?,
            Err(e) => return Err(e.into()),
        }
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
/// for `provided*`, the handler's module for Python and Node. With an exec wrapper
/// (`AWS_LAMBDA_EXEC_WRAPPER`), what the handler means is the wrapper's business (the Lambda
/// Web Adapter's names a start script): Python and Node handlers are not checked.
pub fn check_entry_point(
    code_dir: &Path,
    runtime: &Runtime,
    handler: Option<&str>,
    exec_wrapper: bool,
) -> Result<(), CodeError> {
    let missing = |msg: String| Err(CodeError::MissingEntryPoint(msg));
    match runtime {
        Runtime::Python { .. } | Runtime::Node { .. } if exec_wrapper => Ok(()),
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
        check_entry_point(&dir, &Runtime::Provided("provided".into()), None, false).unwrap();

        let zip = CodeZip::from_bytes(zip_of(&[("bootstrap", b"#!/bin/sh\n", 0o644)]));
        let dir = zip.unpack_into(tmp.path()).unwrap();
        let err = check_entry_point(&dir, &Runtime::Provided("provided".into()), None, false)
            .unwrap_err();
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

    /// A zip with `(name, content)` files and `(name, target)` links.
    fn zip_with_links(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut buf);
        for (name, target) in links {
            w.add_symlink(*name, *target, zip::write::SimpleFileOptions::default())
                .unwrap();
        }
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
        buf.into_inner()
    }

    /// Unpacks into `base/code` and says whether anything appeared in `base` besides it.
    fn unpack_in(base: &Path, bytes: &[u8]) -> (Result<(), CodeError>, Vec<String>) {
        let result = unpack(bytes, &base.join("code"));
        let mut outside: Vec<String> = std::fs::read_dir(base)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "code")
            .collect();
        outside.sort();
        (result, outside)
    }

    #[test]
    fn a_chain_of_links_climbing_through_each_other_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // Each link is inside on its own text; followed, l3/x is two levels up.
        let bytes = zip_with_links(
            &[("l3/escaped", b"written outside")],
            &[("l1", "."), ("l2", "l1/.."), ("l3", "l2/..")],
        );
        let (result, outside) = unpack_in(tmp.path(), &bytes);
        assert!(
            matches!(result, Err(CodeError::UnsafePath(_))),
            "{result:?}"
        );
        assert!(outside.is_empty(), "{outside:?}");
        // The links alone, without a file written through them: still refused (l2 -> l1/..).
        let bytes = zip_with_links(&[], &[("l1", "."), ("l2", "l1/..")]);
        let (result, _) = unpack_in(tmp.path(), &bytes);
        let err = result.unwrap_err().to_string();
        assert!(err.contains("links to links"), "{err}");
    }

    #[test]
    fn links_out_absolute_paths_parents_and_writes_through_links_are_refused() {
        for (files, links) in [
            (vec![("../evil", &b"x"[..])], vec![]),
            (vec![("/etc/evil", &b"x"[..])], vec![]),
            (vec![], vec![("out", "../..")]),
            (vec![], vec![("abs", "/etc")]),
            (vec![("dir/file", &b"x"[..])], vec![("dir", "elsewhere")]),
            (vec![], vec![("a", "b"), ("b", "c")]),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let bytes = zip_with_links(&files, &links);
            let (result, outside) = unpack_in(tmp.path(), &bytes);
            assert!(
                matches!(result, Err(CodeError::UnsafePath(_))),
                "{files:?} {links:?}: {result:?}"
            );
            assert!(outside.is_empty(), "{outside:?}");
        }
        // Links inside, to real files and directories, are fine.
        let tmp = tempfile::tempdir().unwrap();
        let bytes = zip_with_links(
            &[("lib/real.so.1", b"elf"), ("bin/tool", b"x")],
            &[
                ("lib/real.so", "real.so.1"),
                ("tools", "bin"),
                ("self", "."),
            ],
        );
        let (result, _) = unpack_in(tmp.path(), &bytes);
        result.unwrap();
        assert_eq!(
            std::fs::read(tmp.path().join("code/lib/real.so")).unwrap(),
            b"elf"
        );
    }

    #[test]
    fn two_entries_for_one_path_are_refused() {
        // `a` and `./a` are one file once unpacked: which one wins would depend on order.
        let tmp = tempfile::tempdir().unwrap();
        let bytes = zip_with_links(&[("a", b"1"), ("./a", b"2")], &[]);
        let (result, _) = unpack_in(tmp.path(), &bytes);
        let err = result.unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
    }

    #[test]
    fn limits_on_bytes_entries_and_ratio_name_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let zeros = vec![0u8; 4 * 1024 * 1024];
        let bytes = zip_of(&[("a", &zeros, 0o644), ("b", &zeros, 0o644)]);
        let small = Limits {
            unpacked_bytes: 6 * 1024 * 1024,
            ..Limits::default()
        };
        let err = unpack_within(&bytes, &tmp.path().join("1"), small).unwrap_err();
        assert!(err.to_string().contains("6291456 bytes"), "{err}");

        let few = Limits {
            entries: 1,
            ..Limits::default()
        };
        let err = unpack_within(&bytes, &tmp.path().join("2"), few).unwrap_err();
        assert!(err.to_string().contains("limit of 1"), "{err}");

        // 32 MiB of zeros deflate to about 32 KiB: a ratio of ~1000.
        let bomb = zip_of(&[("bomb", &vec![0u8; 32 * 1024 * 1024], 0o644)]);
        let err = unpack(&bomb, &tmp.path().join("3")).unwrap_err();
        assert!(err.to_string().contains("compression ratio"), "{err}");
        // The same bytes under the ratio floor are fine.
        unpack(&bytes, &tmp.path().join("4")).unwrap();
    }

    #[test]
    fn read_within_keeps_the_unpacking_rules() {
        // What unpacking refuses, reading into memory refuses too.
        for (files, links) in [
            (vec![("../evil", &b"x"[..])], vec![]),
            (vec![], vec![("out", "../..")]),
            (vec![("dir/file", &b"x"[..])], vec![("dir", "elsewhere")]),
            (vec![("a", &b"1"[..]), ("./a", &b"2"[..])], vec![]),
        ] {
            let bytes = zip_with_links(&files, &links);
            assert!(
                matches!(
                    read_within(&bytes, Limits::default()),
                    Err(CodeError::UnsafePath(_))
                ),
                "{files:?} {links:?}"
            );
        }
        let bomb = zip_of(&[("bomb", &vec![0u8; 32 * 1024 * 1024], 0o644)]);
        let err = read_within(&bomb, Limits::default()).unwrap_err();
        assert!(err.to_string().contains("compression ratio"), "{err}");
        let bytes = zip_with_links(&[("bin/tool", b"x")], &[("tools", "bin")]);
        let entries = read_within(&bytes, Limits::default()).unwrap();
        assert!(entries.contains(&(
            PathBuf::from("bin/tool"),
            ArchiveEntry::File {
                mode: 0o644,
                content: b"x".to_vec()
            }
        )));
        assert!(entries.contains(&(
            PathBuf::from("tools"),
            ArchiveEntry::Link {
                target: "bin".into()
            }
        )));
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
        check_entry_point(&dir, &py, Some("src/app.handler"), false).unwrap();
        check_entry_point(&dir, &py, Some("src.app.handler"), false).unwrap();
        let err = check_entry_point(&dir, &py, Some("app.handler"), false).unwrap_err();
        assert!(err.to_string().contains("app.py"), "{err}");
        assert!(check_entry_point(&dir, &py, Some("nohandler"), false).is_err());
        let node = Runtime::Node { major: 20 };
        check_entry_point(&dir, &node, Some("index.handler"), false).unwrap();
        assert!(check_entry_point(&dir, &node, Some("main.handler"), false).is_err());
        // With an exec wrapper the handler is the wrapper's to read (a start script, say).
        check_entry_point(&dir, &py, Some("run.sh"), true).unwrap();
        check_entry_point(&dir, &node, Some("run.sh"), true).unwrap();
        let provided = Runtime::Provided("provided".into());
        assert!(check_entry_point(&dir, &provided, None, true).is_err());
    }
}
