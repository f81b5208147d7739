//! Least privilege: once the node is set up, the daemon gives up root and
//! every capability.
//!
//! Why: the daemon parses untrusted datagrams from the network for its
//! whole life, but needs privilege only while it starts. Everything that
//! does happens before [`drop_privileges`]: the TUN device with its
//! addresses and MTU (CAP_NET_ADMIN), the TUN's multicast flag and routes
//! (`ip`, CAP_NET_ADMIN), `accept_local` in `/proc/sys`, the UDP socket's
//! forced buffer sizes (`SO_RCVBUFFORCE`, CAP_NET_ADMIN), the DNS
//! responder's sockets on port 53 (CAP_NET_BIND_SERVICE), the system
//! resolver (`resolvectl`, awaited before the drop), reading the key,
//! certificate and CA files, the API's token file and listener, and the
//! control socket. At run time the daemon only reads and writes the
//! descriptors it already holds (TUN, UDP, TCP and unix listeners and
//! their connections) and, on a reload, its config file and the
//! certificate, CA and revocation list files it names (which must stay
//! readable by the daemon's user; the key file is not read again), and
//! writes the newest revocation list to its state directory (which must
//! stay writable by that user); it runs no program and changes no route or
//! address;
//! the TUN device and its routes go away by themselves when its descriptor
//! is closed. So it keeps **no capability**. Should a run-time need appear
//! (routes changed while running), keep just that capability: set
//! `PR_SET_KEEPCAPS` before `setresuid`, then put it back in the permitted
//! and effective sets (and the inheritable and ambient ones if a child
//! program needs it).
//!
//! The user: `[daemon] user`, or `weft` if that user exists. Without one
//! (or with `user = "root"`) the daemon stays uid 0 but still drops every
//! capability, empties its bounding set and sets no-new-privileges; without
//! a `weft` user it warns, since uid 0 still owns root's files.
//!
//! What [`drop_privileges`] does, in this order (the rules are in
//! capabilities(7)):
//!
//! 1. checks that the process has one thread: capability sets belong to
//!    threads, and a thread started earlier would keep its own;
//! 2. hands the control socket's directory and the state directory to the
//!    user, if the daemon made them, so that it can remove the socket when
//!    it stops and save what it learns;
//! 3. empties the bounding set (needs CAP_SETPCAP, still held), so that no
//!    program the daemon runs can gain a capability, even as uid 0;
//! 4. `setgroups([gid])`, `setresgid`, `setresuid`: all three ids, so none
//!    can be switched back; leaving uid 0 clears the capability sets;
//! 5. clears the effective, permitted, inheritable and ambient sets (the
//!    kernel does not when the daemon stays uid 0);
//! 6. sets `PR_SET_NO_NEW_PRIVS`: no set-user-ID program or file
//!    capability raises privileges after an exec;
//! 7. checks the result in `/proc/self/status`, and that `setuid(0)` fails.
//!
//! No seccomp filter yet: tokio, hyper, tun-rs and quinn-udp need a long
//! list of system calls that changes with libc and kernel versions, and a
//! filter that misses one kills the daemon on a rare path at run time; it
//! needs a test of every path first.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use caps::CapSet;
use nix::unistd::{Gid, Group, Uid, User};
use tracing::{info, warn};

use crate::config::{Config, DEFAULT_DAEMON_USER};

/// Who the daemon runs as after [`drop_privileges`], for the log.
#[derive(Debug, Clone)]
pub(super) struct Privileges {
    /// The user's name (`root` when it stayed root).
    pub(super) user: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// Whom the daemon will become, found from the config before anything is
/// set up, so that a user that does not exist is reported at once.
pub(super) struct Plan {
    target: Target,
    /// The config file, for errors.
    file: PathBuf,
}

impl Plan {
    /// Looks up `[daemon] user` and `group` (or the default user).
    pub(super) fn new(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            target: target(config)?,
            file: config.file.clone(),
        })
    }
}

/// Switches to the planned user and drops every capability (see the
/// module doc). `handover` lists the directories the daemon made and must
/// still write to (the control socket's, the state directory). Must run on
/// the only thread.
pub(super) fn drop_privileges(plan: Plan, handover: &[&Path]) -> anyhow::Result<Privileges> {
    let threads = std::fs::read_dir("/proc/self/task")
        .context("cannot list this process's threads")?
        .count();
    if threads != 1 {
        bail!(
            "cannot drop privileges: the daemon has {threads} threads, and capabilities belong to each thread"
        );
    }
    let Plan { target, file } = plan;
    let started_as_root = nix::unistd::geteuid().is_root();
    let privileges = match &target {
        Target::Switch { user, gid } if started_as_root => {
            for directory in handover {
                std::os::unix::fs::chown(directory, Some(user.uid.as_raw()), Some(gid.as_raw()))
                    .with_context(|| {
                        format!("cannot hand {} to user {}", directory.display(), user.name)
                    })?;
            }
            empty_bounding_set()?;
            nix::unistd::setgroups(&[*gid]).context("setgroups")?;
            nix::unistd::setresgid(*gid, *gid, *gid).context("setresgid")?;
            nix::unistd::setresuid(user.uid, user.uid, user.uid).context("setresuid")?;
            Privileges {
                user: user.name.clone(),
                uid: user.uid.as_raw(),
                gid: gid.as_raw(),
            }
        }
        Target::Switch { user, .. } => {
            let current = nix::unistd::getuid();
            if current != user.uid {
                bail!(
                    "{}: only a daemon started as root can switch to user {} (this one runs as uid {current})",
                    file.display(),
                    user.name
                );
            }
            // Started unprivileged (e.g. with ambient CAP_NET_ADMIN from a
            // service manager): there may be no CAP_SETPCAP to empty the
            // bounding set with; no-new-privileges covers execs then.
            let _ = empty_bounding_set();
            Privileges {
                user: user.name.clone(),
                uid: current.as_raw(),
                gid: nix::unistd::getgid().as_raw(),
            }
        }
        Target::StayRoot { .. } => {
            if started_as_root {
                empty_bounding_set()?;
            } else {
                let _ = empty_bounding_set();
            }
            let uid = nix::unistd::getuid();
            Privileges {
                user: User::from_uid(uid)
                    .ok()
                    .flatten()
                    .map_or_else(|| uid.to_string(), |user| user.name),
                uid: uid.as_raw(),
                gid: nix::unistd::getgid().as_raw(),
            }
        }
    };
    clear_capabilities()?;
    nix::sys::prctl::set_no_new_privs().context("cannot set no-new-privileges")?;
    verify(&privileges)?;
    match target {
        Target::StayRoot { asked: false } if privileges.uid == 0 => warn!(
            "no user '{DEFAULT_DAEMON_USER}' here: running as root, though with no capabilities; create it (useradd --system --no-create-home --shell /usr/sbin/nologin {DEFAULT_DAEMON_USER}) or set [daemon] user"
        ),
        _ => info!(
            user = %privileges.user,
            uid = privileges.uid,
            gid = privileges.gid,
            "privileges dropped: running as this user, with no capabilities"
        ),
    }
    Ok(privileges)
}

/// Whom to become.
enum Target {
    Switch {
        user: User,
        gid: Gid,
    },
    /// Stay uid 0; `asked`: the config says so (else there is no `weft`
    /// user).
    StayRoot {
        asked: bool,
    },
}

fn target(config: &Config) -> anyhow::Result<Target> {
    let user = match &config.daemon.user {
        Some(name) => {
            let user = User::from_name(&name.value)
                .with_context(|| format!("cannot look up user {}", name.value))?
                .ok_or_else(|| {
                    config.error_at_value(
                        name,
                        format!(
                            "there is no user '{}' on this system (create it with useradd --system, or set user = \"root\")",
                            name.value
                        ),
                    )
                })?;
            if user.uid.is_root() {
                return Ok(Target::StayRoot { asked: true });
            }
            user
        }
        None => match User::from_name(DEFAULT_DAEMON_USER)
            .with_context(|| format!("cannot look up user {DEFAULT_DAEMON_USER}"))?
        {
            Some(user) if !user.uid.is_root() => user,
            _ => return Ok(Target::StayRoot { asked: false }),
        },
    };
    let gid = match &config.daemon.group {
        Some(name) => {
            Group::from_name(&name.value)
                .with_context(|| format!("cannot look up group {}", name.value))?
                .ok_or_else(|| {
                    config.error_at_value(
                        name,
                        format!("there is no group '{}' on this system", name.value),
                    )
                })?
                .gid
        }
        None => user.gid,
    };
    Ok(Target::Switch { user, gid })
}

/// Drops every capability from the bounding set, so that no exec can
/// regain one.
fn empty_bounding_set() -> anyhow::Result<()> {
    caps::clear(None, CapSet::Bounding).context("cannot empty the capability bounding set")
}

/// Empties the ambient, inheritable, effective and permitted sets (in an
/// order the kernel accepts: effective must stay within permitted).
fn clear_capabilities() -> anyhow::Result<()> {
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).with_context(|| format!("cannot clear the {set:?} capabilities"))?;
    }
    Ok(())
}

/// Reads the result back as the kernel reports it: every capability set
/// empty, no-new-privileges on, the ids as meant, and no way back to uid 0.
fn verify(privileges: &Privileges) -> anyhow::Result<()> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let view = ProcessStatus::parse(&status);
    for (field, value) in [
        ("CapEff", view.cap_eff),
        ("CapPrm", view.cap_prm),
        ("CapInh", view.cap_inh),
        ("CapAmb", view.cap_amb),
    ] {
        if value != Some(0) {
            bail!("capabilities remain after dropping them: {field} = {value:x?}");
        }
    }
    if view.no_new_privs != Some(true) {
        bail!("no-new-privileges is not set");
    }
    if view.uids != Some([privileges.uid; 4]) || view.gids != Some([privileges.gid; 4]) {
        bail!(
            "the process runs as uids {:?}, gids {:?}, not {} and {}",
            view.uids,
            view.gids,
            privileges.uid,
            privileges.gid
        );
    }
    if privileges.uid != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        bail!("the daemon could switch back to root after dropping privileges");
    }
    Ok(())
}

/// The fields of `/proc/PID/status` this module checks.
#[derive(Debug, Default, PartialEq, Eq)]
struct ProcessStatus {
    uids: Option<[u32; 4]>,
    gids: Option<[u32; 4]>,
    cap_eff: Option<u64>,
    cap_prm: Option<u64>,
    cap_inh: Option<u64>,
    cap_amb: Option<u64>,
    cap_bnd: Option<u64>,
    no_new_privs: Option<bool>,
}

impl ProcessStatus {
    /// Reads the fields from the text of a `/proc/PID/status` file;
    /// missing or malformed ones stay `None`.
    fn parse(text: &str) -> Self {
        let mut status = ProcessStatus::default();
        for line in text.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let mask = || u64::from_str_radix(value, 16).ok();
            let ids = || {
                let ids: Vec<u32> = value
                    .split_whitespace()
                    .filter_map(|id| id.parse().ok())
                    .collect();
                <[u32; 4]>::try_from(ids).ok()
            };
            match name {
                "Uid" => status.uids = ids(),
                "Gid" => status.gids = ids(),
                "CapEff" => status.cap_eff = mask(),
                "CapPrm" => status.cap_prm = mask(),
                "CapInh" => status.cap_inh = mask(),
                "CapAmb" => status.cap_amb = mask(),
                "CapBnd" => status.cap_bnd = mask(),
                "NoNewPrivs" => status.no_new_privs = value.parse::<u8>().ok().map(|v| v == 1),
                _ => {}
            }
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(daemon: &str) -> Config {
        let text = format!(
            "[node]\nkey = \"node.key\"\ncertificate = \"node.crt\"\nca = \"ca.crt\"\n[daemon]\n{daemon}\n"
        );
        Config::parse(Path::new("/etc/weft/weft.toml"), &text).unwrap()
    }

    #[test]
    fn a_user_or_group_that_does_not_exist_is_reported_at_its_key() {
        let Err(error) = Plan::new(&config("user = \"weft-test-no-such-user\"")) else {
            panic!("planned to become a user that does not exist");
        };
        assert!(
            error.to_string().starts_with(
                "/etc/weft/weft.toml:6:8: daemon.user: there is no user 'weft-test-no-such-user'"
            ),
            "{error}"
        );
        let Err(error) = Plan::new(&config(
            "user = \"nobody\"\ngroup = \"weft-test-no-such-group\"",
        )) else {
            panic!("planned to become a group that does not exist");
        };
        assert!(
            error
                .to_string()
                .starts_with("/etc/weft/weft.toml:7:9: daemon.group:"),
            "{error}"
        );
    }

    #[test]
    fn root_stays_root_and_other_users_are_switched_to() {
        let plan = Plan::new(&config("user = \"root\"")).unwrap();
        assert!(matches!(plan.target, Target::StayRoot { asked: true }));
        let plan = Plan::new(&config("user = \"nobody\"")).unwrap();
        let Target::Switch { user, gid } = plan.target else {
            panic!("nobody is not root");
        };
        assert_eq!(user.name, "nobody");
        assert_eq!(gid, user.gid);
    }

    #[test]
    fn process_status_fields_are_read() {
        let text = "Name:\tweft\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n\
                    CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000001000\n\
                    CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";
        let status = ProcessStatus::parse(text);
        assert_eq!(status.uids, Some([65534; 4]));
        assert_eq!(status.gids, Some([65534; 4]));
        assert_eq!(status.cap_eff, Some(1 << 12));
        assert_eq!(status.cap_prm, Some(0));
        assert_eq!(status.cap_bnd, Some(0x1ff_ffff_ffff));
        assert_eq!(status.no_new_privs, Some(true));
        assert_eq!(
            ProcessStatus::parse("Uid:\t1 2\n"),
            ProcessStatus::default()
        );
    }
}
