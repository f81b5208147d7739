//! Snapshot tables: headline numbers of scenarios (outage, loss, latency)
//! kept in a text file beside the tests, so that a change in them shows up
//! as a diff in review.
//!
//! A table is a text file with one line per scenario: a key, then the
//! numbers as `name=value` pairs; lines starting with `#` are comments. A
//! test renders its line and calls [`check_snapshot`], which compares it
//! with the file. The numbers are deterministic for the default seed, so
//! any difference means the behaviour changed: review it, and accept it by
//! running the tests again with `WEFT_SIM_BLESS=1`, which rewrites the
//! lines. Runs with another seed (`WEFT_SIM_SEED`) are not compared.
//!
//! Tests of one binary run on several threads: a process-wide lock keeps
//! their reads and rewrites of a file apart.

use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use crate::sim::SEED_ENV;

/// The environment variable that makes [`check_snapshot`] rewrite lines
/// rather than compare them.
pub const BLESS_ENV: &str = "WEFT_SIM_BLESS";

/// Why a snapshot did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// The file has no line for the key.
    Missing {
        /// The scenario.
        key: String,
        /// The line the test produced.
        actual: String,
    },
    /// The line differs.
    Changed {
        /// The line in the file.
        expected: String,
        /// The line the test produced.
        actual: String,
    },
    /// The file could not be read or written.
    Io(String),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { key, actual } => write!(
                f,
                "no snapshot for '{key}'; got\n  {actual}\n(accept with {BLESS_ENV}=1)"
            ),
            Self::Changed { expected, actual } => write!(
                f,
                "snapshot changed:\n  expected {expected}\n  actual   {actual}\n(review, then accept with {BLESS_ENV}=1)"
            ),
            Self::Io(e) => write!(f, "snapshot file: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// Renders a snapshot line: the key padded to a column, then the values.
pub fn snapshot_line(key: &str, values: &[(&str, String)]) -> String {
    let mut line = format!("{key:<28}");
    for (name, value) in values {
        line.push_str(&format!(" {name}={value}"));
    }
    line.trim_end().to_owned()
}

/// Compares the line for `key` in the table at `path` with `line` (from
/// [`snapshot_line`]); with `WEFT_SIM_BLESS` set, writes it instead. Does
/// nothing when the seed comes from `WEFT_SIM_SEED`.
pub fn check_snapshot(path: &Path, key: &str, line: &str) -> Result<(), SnapshotError> {
    static LOCK: Mutex<()> = Mutex::new(());
    if std::env::var_os(SEED_ENV).is_some() {
        return Ok(());
    }
    // A test that panicked while holding the lock left no half-written
    // file (writes are whole), so the lock is still good.
    let _guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(SnapshotError::Io(format!("{}: {e}", path.display()))),
    };
    let is_key = |l: &str| l.split_whitespace().next() == Some(key);
    let current = text.lines().find(|l| is_key(l));
    if std::env::var_os(BLESS_ENV).is_some() {
        if current == Some(line) {
            return Ok(());
        }
        let mut lines: Vec<&str> = text.lines().filter(|l| !is_key(l)).collect();
        lines.push(line);
        // Comments first in their order, then the scenarios by key.
        lines.sort_by_key(|l| match l.starts_with('#') {
            true => None,
            false => Some(l.split_whitespace().next().map(str::to_owned)),
        });
        let mut out = lines.join("\n");
        out.push('\n');
        return std::fs::write(path, out)
            .map_err(|e| SnapshotError::Io(format!("{}: {e}", path.display())));
    }
    match current {
        Some(expected) if expected == line => Ok(()),
        Some(expected) => Err(SnapshotError::Changed {
            expected: expected.to_owned(),
            actual: line.to_owned(),
        }),
        None => Err(SnapshotError::Missing {
            key: key.to_owned(),
            actual: line.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_pad_the_key_and_list_the_values() {
        let line = snapshot_line("cut", &[("outage_ms", "240".into()), ("lost", "3".into())]);
        assert_eq!(line, format!("{:<28} outage_ms=240 lost=3", "cut"));
    }
}
