//! How the `weft` command reports a failure: the error and its causes, each
//! said once, and a hint when the cause is a permission the user lacks.
//!
//! Some errors repeat their cause in their own message and also hand it on
//! as their `source` (an error type whose message ends in `: {source}`), so
//! printing the chain naively says it twice ("Is a directory (os error 21):
//! Is a directory (os error 21)"). [`render`] drops a cause whose text the
//! message before it already ends with.

use std::io;

/// The text `weft` prints for `error` (without the leading `weft: `): the
/// chain of causes joined by `: `, repeats left out, then a hint on its own
/// line if a cause is a permission error and the user is not root.
pub fn render(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if message.is_empty() || text.ends_with(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    if is_permission_error(error) && !nix::unistd::geteuid().is_root() {
        text.push('\n');
        text.push_str(&permission_hint());
    }
    text
}

/// Whether any cause is the OS refusing access (EACCES or EPERM), as an
/// `io::Error` or as the text of one that an error message took in.
fn is_permission_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied)
            || cause.to_string().contains("(os error 13)")
            || cause.to_string().contains("(os error 1)")
    })
}

fn permission_hint() -> String {
    let uid = nix::unistd::geteuid();
    let user = nix::unistd::User::from_uid(uid).ok().flatten().map_or_else(
        || format!("uid {uid}"),
        |u| format!("{} (uid {uid})", u.name),
    );
    format!(
        "hint: this ran as {user}. A node's files (/etc/weft, its secret key), its control socket \
         and its TUN device belong to root or to the user the daemon runs as (`weft` in the \
         Debian package): run the command with sudo, or as that user"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose message already ends with its source's, as
    /// `#[error("...: {source}")]` makes them.
    #[derive(Debug)]
    struct Repeats(io::Error);

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read config file /etc: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_the_message_already_ends_with_is_said_once() {
        let error = anyhow::Error::new(Repeats(io::Error::from_raw_os_error(libc::EISDIR)));
        let text = render(&error);
        assert_eq!(
            text,
            "cannot read config file /etc: Is a directory (os error 21)"
        );
    }

    #[test]
    fn distinct_causes_are_joined_in_order() {
        let error = anyhow::Error::new(io::Error::from_raw_os_error(libc::ENOENT))
            .context("cannot read /x")
            .context("weft up failed");
        assert_eq!(
            render(&error),
            "weft up failed: cannot read /x: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn permission_errors_are_recognised_in_the_chain_and_in_text() {
        let direct = anyhow::Error::new(io::Error::from_raw_os_error(libc::EACCES)).context("x");
        assert!(is_permission_error(&direct));
        let in_text =
            anyhow::anyhow!("cannot read /etc/weft/node.key: Permission denied (os error 13)");
        assert!(is_permission_error(&in_text));
        let other = anyhow::Error::new(io::Error::from_raw_os_error(libc::ENOENT));
        assert!(!is_permission_error(&other));
    }
}
