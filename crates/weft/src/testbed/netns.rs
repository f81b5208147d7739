//! Network namespaces, veth links and the bridge, made with iproute2.
//!
//! Names carry the creating process's PID: `wt{pid}x{random}h{i}` for hosts,
//! `wt{pid}x{random}br` for the bridge, and `wt{pid}x{random}` for the temp
//! dir. That makes names unique across parallel tests (the random part) and
//! lets a later run recognise leftovers of a crashed one (the PID no longer
//! exists) and remove them. Interface names live inside their own
//! namespaces, so they are short and fixed (`u0`, `br0`, `h{i}`), well under
//! the kernel's 15-character limit.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::command::run;

/// Where `ip netns` keeps its named namespaces.
pub(crate) const NETNS_DIR: &str = "/run/netns";
/// Where `ip netns exec NS` finds files to mount over `/etc` (`/etc/netns/NS/resolv.conf`).
pub(crate) const ETC_NETNS_DIR: &str = "/etc/netns";
/// Every testbed name starts with this.
const PREFIX: &str = "wt";

/// A testbed's unique stem: `wt{pid}x{random}`.
pub(crate) fn new_stem() -> anyhow::Result<String> {
    let mut random = [0u8; 3];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .map_err(|_| anyhow::anyhow!("the OS random source failed"))?;
    let random = u32::from_be_bytes([0, random[0], random[1], random[2]]);
    Ok(format!("{PREFIX}{}x{random:06x}", std::process::id()))
}

/// An `ip` command.
pub(crate) fn ip() -> Command {
    Command::new("ip")
}

/// Creates namespace `name` with its loopback up.
pub(crate) fn add_namespace(name: &str) -> anyhow::Result<()> {
    run(ip().args(["netns", "add", name]))?;
    run(ip().args(["-n", name, "link", "set", "lo", "up"]))?;
    Ok(())
}

/// Deletes namespace `name`; errors are returned for the caller to report.
pub(crate) fn delete_namespace(name: &str) -> anyhow::Result<()> {
    run(ip().args(["netns", "delete", name])).map(drop)
}

/// The directory of files `ip netns exec` mounts over `/etc` for
/// namespace `name`.
pub(crate) fn etc_netns_dir(name: &str) -> PathBuf {
    Path::new(ETC_NETNS_DIR).join(name)
}

/// Removes namespace `name`'s `/etc/netns` directory, if there is one.
pub(crate) fn remove_etc_netns(name: &str) -> anyhow::Result<()> {
    let dir = etc_netns_dir(name);
    match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// The path `setns` opens for namespace `name`.
pub(crate) fn namespace_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Runs `f` on a new thread that has joined namespace `name` first; the
/// handle gives its result (or the error of joining the namespace).
pub(crate) fn spawn_in<T, F>(name: &str, f: F) -> std::thread::JoinHandle<anyhow::Result<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let path = namespace_path(name);
    std::thread::spawn(move || {
        join_namespace(&path)?;
        Ok(f())
    })
}

/// Moves the calling thread into the network namespace at `path`.
pub(crate) fn join_namespace(path: &Path) -> anyhow::Result<()> {
    let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns into {}", path.display()))
}

/// Removes what crashed testbed runs left behind: namespaces, their
/// `/etc/netns` directories and temp dirs whose creator PID is gone. Processes still inside such a namespace were
/// started by that dead run (daemons orphaned by a SIGKILLed test), so they
/// are killed by PID first; otherwise their TUN devices would linger.
/// Best effort: failures are ignored, the next run tries again.
pub(crate) fn remove_leftovers(temp_root: &Path) {
    if let Ok(entries) = fs::read_dir(NETNS_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_stale(&name) {
                continue;
            }
            kill_processes_in(&name);
            let _ = delete_namespace(&name);
        }
    }
    if let Ok(entries) = fs::read_dir(ETC_NETNS_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_stale(&name) {
                let _ = remove_etc_netns(&name);
            }
        }
    }
    if let Ok(entries) = fs::read_dir(temp_root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_stale(&name) && entry.path().is_dir() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Whether `name` is a testbed name whose creator process no longer exists.
fn is_stale(name: &str) -> bool {
    match creator_pid(name) {
        Some(pid) => !Path::new("/proc").join(pid.to_string()).exists(),
        None => false,
    }
}

/// The PID in `wt{pid}x{hex}[h{i}|br]`, if `name` has exactly that shape.
fn creator_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, rest) = rest.split_once('x')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let random = rest.get(..6)?;
    if !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let suffix = &rest[6..];
    let suffix_ok = suffix.is_empty()
        || suffix == "br"
        || suffix
            .strip_prefix('h')
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
    if !suffix_ok {
        return None;
    }
    pid.parse().ok()
}

fn kill_processes_in(namespace: &str) {
    let Ok(stdout) = run(ip().args(["netns", "pids", namespace])) else {
        return;
    };
    for pid in String::from_utf8_lossy(&stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Runs `f` and attaches `what` to its error.
pub(crate) fn step<T>(what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    f().with_context(|| what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creator_pid_parses_only_testbed_names() {
        assert_eq!(creator_pid("wt1234x00abcfh0"), Some(1234));
        assert_eq!(creator_pid("wt1234x00abcfh12"), Some(1234));
        assert_eq!(creator_pid("wt1234x00abcfbr"), Some(1234));
        assert_eq!(creator_pid("wt1234x00abcf"), Some(1234));
        assert_eq!(creator_pid("wt1234x00abcfh"), None);
        assert_eq!(creator_pid("wt1234x00abch0"), None);
        assert_eq!(creator_pid("wt1234x00abcfbbr"), None);
        assert_eq!(creator_pid("wt1234xabcdefbr"), Some(1234));
        assert_eq!(creator_pid("wtx00abcfh0"), None);
        assert_eq!(creator_pid("wt12a4x00abcfh0"), None);
        assert_eq!(creator_pid("wt1234x00abcfz"), None);
        assert_eq!(creator_pid("netns1"), None);
        assert_eq!(creator_pid("wt1234"), None);
    }

    #[test]
    fn stems_are_unique_and_parse() {
        let a = new_stem().unwrap();
        let b = new_stem().unwrap();
        assert_ne!(a, b);
        assert_eq!(creator_pid(&a), Some(std::process::id()));
        assert_eq!(creator_pid(&format!("{a}h3")), Some(std::process::id()));
    }
}
