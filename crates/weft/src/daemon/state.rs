//! The daemon's state directory: what a node learns while it runs and
//! must still know after a restart.
//!
//! Today that is one file, `revocations.crl`: the newest revocation list
//! the node holds, whether its operator gave it (`[pki] revocations`) or a
//! peer passed it on (PROTOCOL.md §9.2). Without it, a restarted node
//! would accept the nodes a peer's list revoked until some peer offered
//! the list again. The loop saves the list whenever the node holds a newer
//! one; at start the saved list and the configured one are both checked
//! against the CA and the node gets the newer (lists only get newer, so a
//! configured file older than what was learnt cannot undo a revocation).
//!
//! A list is public (it is signed, and every node passes it on), so the
//! file is 0644. It is replaced atomically: written beside it under a
//! temporary name, synced, renamed over it, and the directory synced; on
//! any error the old file stays as it was. A saved file that cannot be
//! read, is not a list, or is not signed by this network's CA is ignored
//! with a warning that names it: it never stops the daemon, since the
//! configured list and the peers' still count.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use tracing::{info, warn};
use weft_core::{CaCertificate, RevocationError, RevocationList};

/// The saved revocation list's file name in the state directory.
pub(super) const REVOCATIONS_FILE: &str = "revocations.crl";

/// Why a saved list was not used.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoadError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{} is larger than any revocation list ({MAX_FILE_LEN} bytes at most)", path.display())]
    TooLarge { path: PathBuf },
    #[error("{} is not a revocation list: {error}", path.display())]
    Malformed {
        path: PathBuf,
        error: RevocationError,
    },
    #[error("{} is not signed by this network's CA: {error}", path.display())]
    Unverified {
        path: PathBuf,
        error: RevocationError,
    },
}

/// Makes the state directory `dir` (mode 0750) if it does not exist, and
/// returns it if it was made, so that it can be handed to the user the
/// daemon drops to. One that cannot be made is warned about: the node
/// runs, only without what it would have saved.
pub(super) fn prepare(dir: &Path) -> Option<PathBuf> {
    if dir.is_dir() {
        return None;
    }
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir);
    match made {
        Ok(()) => {
            info!(dir = %dir.display(), "made the state directory");
            Some(dir.to_owned())
        }
        Err(error) => {
            warn!(
                dir = %dir.display(),
                %error,
                "cannot make the state directory (daemon.state_dir); a revocation list learnt from peers will not survive a restart"
            );
            None
        }
    }
}

/// The list saved in `dir`, if there is one and `ca` signed it; any other
/// file is warned about, naming it, and ignored.
pub(super) fn load_revocations(dir: &Path, ca: &CaCertificate) -> Option<RevocationList> {
    match read_revocations(dir, ca) {
        Ok(list) => list,
        Err(error) => {
            warn!(%error, "ignoring the saved revocation list");
            None
        }
    }
}

/// The list saved in `dir` (`None`: no file), checked against `ca`.
pub(super) fn read_revocations(
    dir: &Path,
    ca: &CaCertificate,
) -> Result<Option<RevocationList>, LoadError> {
    let path = dir.join(REVOCATIONS_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(LoadError::Read { path, error }),
    };
    let mut text = String::new();
    let read = file
        .take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|error| LoadError::Read {
            path: path.clone(),
            error,
        })?;
    if read as u64 > MAX_FILE_LEN {
        return Err(LoadError::TooLarge { path });
    }
    let list = match RevocationList::from_pem(&text) {
        Ok(list) => list,
        Err(error) => return Err(LoadError::Malformed { path, error }),
    };
    if let Err(error) = list.verify(ca) {
        return Err(LoadError::Unverified { path, error });
    }
    Ok(Some(list))
}

/// Replaces the list saved in `dir` with `list`, atomically; returns the
/// file's path. On error the file saved before stays.
pub(super) fn save_revocations(dir: &Path, list: &RevocationList) -> anyhow::Result<PathBuf> {
    let path = dir.join(REVOCATIONS_FILE);
    // The process id keeps two daemons that share a directory by mistake
    // from writing into each other's temporary file.
    let temporary = dir.join(format!(".{REVOCATIONS_FILE}.{}.tmp", std::process::id()));
    let written = write_synced(&temporary, list.to_pem().as_bytes())
        .and_then(|()| {
            std::fs::rename(&temporary, &path).with_context(|| {
                format!(
                    "cannot rename {} to {}",
                    temporary.display(),
                    path.display()
                )
            })
        })
        .with_context(|| format!("cannot save the revocation list in {}", path.display()));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    // The rename is durable once the directory is; should that sync fail,
    // the file is in place all the same.
    if let Err(error) = File::open(dir).and_then(|d| d.sync_all()) {
        warn!(dir = %dir.display(), %error, "cannot sync the state directory");
    }
    Ok(path)
}

/// The newer of two lists (`a` when their versions are equal).
pub(super) fn newer(
    a: Option<RevocationList>,
    b: Option<RevocationList>,
) -> Option<RevocationList> {
    match (a, b) {
        (Some(a), Some(b)) if b.version() > a.version() => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

/// Writes `bytes` to a new file at `path` (mode 0644) and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // The daemon's umask (0077 under the systemd unit) would make it
    // private; a list is public.
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Largest saved file read: a list is at most 64 KiB, which PEM armour
/// makes about 88 KiB.
const MAX_FILE_LEN: u64 = 256 * 1024;

#[cfg(test)]
mod tests {
    use weft_core::{CaSecret, RevocationTemplate};

    use super::*;

    /// A directory of its own for each test, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("weft-state-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn ca(seed: u8) -> CaSecret {
        CaSecret::new([seed; 32], "testnet", 1_000, 1_000_000).unwrap()
    }

    fn list(ca: &CaSecret, version: u64) -> RevocationList {
        RevocationList::sign(
            ca,
            &RevocationTemplate {
                version,
                issued_at: 1_500,
                names: vec![format!("revoked-{version}")],
                ..RevocationTemplate::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn a_saved_list_is_read_back_and_a_newer_one_replaces_it() {
        let scratch = Scratch::new("roundtrip");
        let ca = ca(1);
        assert!(
            read_revocations(&scratch.0, ca.certificate())
                .unwrap()
                .is_none()
        );

        let path = save_revocations(&scratch.0, &list(&ca, 1)).unwrap();
        assert_eq!(path, scratch.0.join(REVOCATIONS_FILE));
        save_revocations(&scratch.0, &list(&ca, 4)).unwrap();

        let read = read_revocations(&scratch.0, ca.certificate()).unwrap();
        assert_eq!(read, Some(list(&ca, 4)));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let left: Vec<_> = std::fs::read_dir(&scratch.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [REVOCATIONS_FILE], "no temporary file stays");
    }

    #[test]
    fn a_corrupt_file_or_one_from_another_ca_is_refused_naming_it() {
        let scratch = Scratch::new("refused");
        let path = scratch.0.join(REVOCATIONS_FILE);
        let ours = ca(1);

        std::fs::write(&path, "not a list\n").unwrap();
        let error = read_revocations(&scratch.0, ours.certificate()).unwrap_err();
        assert!(matches!(error, LoadError::Malformed { .. }), "{error}");
        assert!(
            error.to_string().contains(&*path.to_string_lossy()),
            "{error}"
        );

        let mut pem = list(&ours, 2).to_pem();
        pem.truncate(pem.len() / 2);
        std::fs::write(&path, pem).unwrap();
        let error = read_revocations(&scratch.0, ours.certificate()).unwrap_err();
        assert!(matches!(error, LoadError::Malformed { .. }), "{error}");

        save_revocations(&scratch.0, &list(&ca(2), 2)).unwrap();
        let error = read_revocations(&scratch.0, ours.certificate()).unwrap_err();
        assert!(matches!(error, LoadError::Unverified { .. }), "{error}");
        assert!(
            error.to_string().contains(&*path.to_string_lossy()),
            "{error}"
        );
        assert_eq!(load_revocations(&scratch.0, ours.certificate()), None);

        std::fs::write(&path, vec![b'A'; 300 * 1024]).unwrap();
        let error = read_revocations(&scratch.0, ours.certificate()).unwrap_err();
        assert!(matches!(error, LoadError::TooLarge { .. }), "{error}");
    }

    #[test]
    fn a_failed_save_keeps_the_file_saved_before() {
        let scratch = Scratch::new("failed");
        let ca = ca(1);
        save_revocations(&scratch.0, &list(&ca, 1)).unwrap();
        // A directory where the temporary file would go makes the write fail.
        let temporary = scratch
            .0
            .join(format!(".{REVOCATIONS_FILE}.{}.tmp", std::process::id()));
        std::fs::create_dir(&temporary).unwrap();

        let error = save_revocations(&scratch.0, &list(&ca, 2)).unwrap_err();

        assert!(
            format!("{error:#}").contains("cannot save the revocation list"),
            "{error:#}"
        );
        let read = read_revocations(&scratch.0, ca.certificate()).unwrap();
        assert_eq!(read.map(|l| l.version()), Some(1));
    }

    #[test]
    fn the_newer_list_wins_and_a_tie_keeps_the_first() {
        let ca = ca(1);
        let (v1, v2) = (list(&ca, 1), list(&ca, 2));
        let version = |l: Option<RevocationList>| l.map(|l| l.version());
        assert_eq!(version(newer(Some(v1.clone()), Some(v2.clone()))), Some(2));
        assert_eq!(version(newer(Some(v2.clone()), Some(v1.clone()))), Some(2));
        assert_eq!(version(newer(None, Some(v1.clone()))), Some(1));
        assert_eq!(version(newer(Some(v1.clone()), None)), Some(1));
        assert_eq!(version(newer(None, None)), None);
        let other = RevocationList::sign(
            &ca,
            &RevocationTemplate {
                version: 2,
                ..RevocationTemplate::default()
            },
        )
        .unwrap();
        assert_eq!(newer(Some(v2.clone()), Some(other.clone())), Some(v2));
        assert_eq!(newer(Some(other.clone()), Some(list(&ca, 2))), Some(other));
    }

    #[test]
    fn prepare_makes_a_missing_directory_and_reports_it() {
        let scratch = Scratch::new("prepare");
        let dir = scratch.0.join("a/b");
        assert_eq!(prepare(&dir), Some(dir.clone()));
        assert!(dir.is_dir());
        assert_eq!(
            prepare(&dir),
            None,
            "an existing directory is not made again"
        );
    }
}
