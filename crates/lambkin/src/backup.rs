//! `lambkin backup` and `lambkin restore`: a root as one `.tar.gz`, taken while the host runs.
//!
//! The databases are copied as SQLite copies them, never as files: the state database (which
//! the running host holds exclusively) by the host itself, `VACUUM INTO` between two of its
//! write batches, so the copy holds every write acknowledged before the backup asked; the
//! spool (which others may read) by the command. The rest of the root is what the host writes
//! whole and renames into place, or never changes once written (function code and layers
//! by hash and version, recipes and artifacts by version), plus the components' work
//! directories as they are. Left out: logs, the runtime clients (written at every start), the
//! IPC socket, the API address and the host's lock.
//!
//! A restore unpacks into a root no host runs on (it takes the root's lock first) and that
//! holds no state yet (or, with `--force`, whose content it replaces). Entries are regular
//! files, directories and symbolic links only, each written inside the root.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::layout::{create_private_dir, Layout, RootLock, RootLockError};
use crate::store::{Store, StoreError};

/// Where snapshots wait to go into the archive: `ROOT/state/backup/`.
fn snapshot_dir(layout: &Layout) -> PathBuf {
    layout.state_dir().join("backup")
}

/// What a running host does for `lambkin backup`: a consistent copy of its state database at
/// `ROOT/state/backup/lambkin.db` (replacing one left there). Returns its path.
pub async fn snapshot_running(layout: &Layout, store: &Store) -> Result<PathBuf, StoreError> {
    let dir = snapshot_dir(layout);
    create_private_dir(&dir).map_err(StoreError::Create)?;
    let path = dir.join("lambkin.db");
    remove_if_present(&path).map_err(StoreError::Create)?;
    store.snapshot(path.clone()).await?;
    Ok(path)
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `VACUUM INTO` from a database file this process opens itself.
fn vacuum_into(database: &Path, target: &Path) -> anyhow::Result<()> {
    remove_if_present(target)?;
    let conn = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", database.display()))?;
    let to = target
        .to_str()
        .with_context(|| format!("{} is not UTF-8", target.display()))?;
    conn.execute("VACUUM INTO ?1", [to])
        .with_context(|| format!("cannot copy {}", database.display()))?;
    Ok(())
}

/// Paths (relative to the root) a backup leaves out, and the databases it takes as copies.
fn left_out(relative: &Path) -> bool {
    const OUT: &[&str] = &[
        "logs",
        "runtimes",
        "ipc.socket",
        "state/api.addr",
        "state/host.lock",
        "state/backup",
    ];
    let text = relative.to_string_lossy();
    OUT.iter().any(|o| relative == Path::new(o))
        || ["state/lambkin.db", "state/spool.db"]
            .iter()
            .any(|db| text.starts_with(db))
}

/// Writes a backup of the root to `out` (a `.tar.gz`, written beside it and renamed into place,
/// owner-only). The host may be running or not; when it runs, `ask_host` has it copy its state
/// database (`snapshot_running`).
pub async fn backup<F>(
    layout: &Layout,
    out: &Path,
    ask_host: impl FnOnce() -> F,
) -> anyhow::Result<String>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let root = layout.root().to_owned();
    let dir = snapshot_dir(layout);
    // With no host running, the command holds the root for the time of the backup.
    let lock = match RootLock::acquire(layout) {
        Ok(lock) => {
            create_private_dir(&dir)?;
            if layout.database().exists() {
                vacuum_into(&layout.database(), &dir.join("lambkin.db"))?;
            }
            Some(lock)
        }
        Err(RootLockError::Held { .. }) => {
            ask_host().await?;
            None
        }
        Err(e) => return Err(e.into()),
    };
    let spool = layout.state_dir().join("spool.db");
    if spool.exists() {
        vacuum_into(&spool, &dir.join("spool.db"))?;
    }
    let out = out.to_owned();
    let written = tokio::task::spawn_blocking(move || write_archive(&root, &dir, &out))
        .await
        .context("the backup's writer failed")??;
    drop(lock);
    Ok(written)
}

fn write_archive(root: &Path, snapshots: &Path, out: &Path) -> anyhow::Result<String> {
    let partial = out.with_extension("partial");
    remove_if_present(&partial)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, flate2::Compression::fast()));
    tar.follow_symlinks(false);
    let mut count = 0usize;
    add_tree(&mut tar, root, Path::new(""), &mut count)?;
    for db in ["lambkin.db", "spool.db"] {
        let copy = snapshots.join(db);
        if copy.exists() {
            tar.append_path_with_name(&copy, Path::new("state").join(db))?;
            count += 1;
            std::fs::remove_file(&copy)?;
        }
    }
    let file = tar.into_inner()?.finish()?;
    file.sync_all()?;
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot move the backup to {}", out.display()))?;
    let _ = std::fs::remove_dir(snapshots);
    Ok(format!(
        "backed up {} to {} ({count} entries)",
        root.display(),
        out.display()
    ))
}

/// Adds `root/relative` and what is under it, in name order; what disappears while the backup
/// walks (a function deleted meanwhile) is skipped.
fn add_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    relative: &Path,
    count: &mut usize,
) -> anyhow::Result<()> {
    let dir = root.join(relative);
    let mut entries: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(Result::ok).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let rel = relative.join(entry.file_name());
        if left_out(&rel) {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let full = entry.path();
        if kind.is_dir() {
            tar.append_dir(&rel, &full)?;
            *count += 1;
            add_tree(tar, root, &rel, count)?;
        } else if kind.is_file() || kind.is_symlink() {
            match tar.append_path_with_name(&full, &rel) {
                Ok(()) => *count += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot add {}", full.display())),
            }
        }
    }
    Ok(())
}

/// Unpacks a backup into the root. Refused while a host runs on it, and when it holds state
/// already unless `force` (then what it holds is replaced).
pub fn restore(layout: &Layout, archive: &Path, force: bool) -> anyhow::Result<String> {
    let root = layout.root().to_owned();
    let _lock = match RootLock::acquire(layout) {
        Ok(lock) => lock,
        Err(RootLockError::Held { holder, .. }) => {
            bail!(
                "a host runs on {}{holder}: stop it before restoring into it",
                root.display()
            )
        }
        Err(e) => return Err(e.into()),
    };
    let held: Vec<PathBuf> = std::fs::read_dir(&root)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p != &layout.state_dir())
        .chain(
            std::fs::read_dir(layout.state_dir())?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n != "host.lock")),
        )
        .collect();
    if !held.is_empty() {
        if !force {
            bail!(
                "{} already holds a root ({} entries); restore into a new directory, or add \
                 --force to replace it",
                root.display(),
                held.len()
            );
        }
        for path in &held {
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            removed.with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut tar = tar::Archive::new(GzDecoder::new(file));
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(nix::unistd::geteuid().is_root());
    tar.set_overwrite(true);
    let mut count = 0usize;
    for entry in tar.entries().context("not a Lambkin backup (.tar.gz)")? {
        let mut entry = entry.context("the backup is damaged")?;
        let path = entry.path()?.into_owned();
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            bail!(
                "the backup's entry {} is not a file, directory or link",
                path.display()
            );
        }
        if path == Path::new("state/host.lock") {
            continue;
        }
        if !entry.unpack_in(&root)? {
            bail!(
                "the backup's entry {} would land outside {}",
                path.display(),
                root.display()
            );
        }
        count += 1;
    }
    Ok(format!(
        "restored {count} entries from {} into {}; start the host on it",
        archive.display(),
        root.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.tar.gz` of one entry whose name is written as given (no checks), of `kind`.
    fn archive_with(dir: &Path, name: &str, kind: tar::EntryType) -> PathBuf {
        let path = dir.join("hostile.tar.gz");
        let file = File::create(&path).unwrap();
        let mut tar = tar::Builder::new(GzEncoder::new(file, flate2::Compression::fast()));
        let mut header = tar::Header::new_gnu();
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_size(3);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append(&header, &b"bad"[..]).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn an_entry_that_would_leave_the_root_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let archive = archive_with(tmp.path(), "../escaped", tar::EntryType::Regular);
        let e = restore(&Layout::new(&root), &archive, false).unwrap_err();
        assert!(e.to_string().contains("would land outside"), "{e:#}");
        assert!(!tmp.path().join("escaped").exists());
    }

    #[test]
    fn an_entry_that_is_no_file_directory_or_link_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let archive = archive_with(tmp.path(), "state/fifo", tar::EntryType::Fifo);
        let e = restore(&Layout::new(&root), &archive, false).unwrap_err();
        assert!(
            e.to_string().contains("is not a file, directory or link"),
            "{e:#}"
        );
        assert!(!root.join("state/fifo").exists());
    }
}
