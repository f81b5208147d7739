//! Running helper programs (`ip`, `weft`) with bounded waits and useful errors.
//!
//! Every call here returns within its timeout: a child that overstays is
//! killed by PID and reaped. Failures carry the command line and its stderr,
//! so a failing test says which step broke and why.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a helper program (`ip`, `weft ca ...`) may run.
pub(crate) const HELPER_TIMEOUT: Duration = Duration::from_secs(20);

/// The current time. The testbed is a driver, so it reads the clock.
#[allow(clippy::disallowed_methods)] // the testbed is a driver: real time is its input
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Runs `command`, requires exit status 0, returns its stdout.
pub(crate) fn run(command: &mut Command) -> anyhow::Result<Vec<u8>> {
    let output = run_with_timeout(command, HELPER_TIMEOUT)?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

/// Runs `command` to completion or until `timeout`, whichever comes first.
/// On timeout the child is killed and reaped and an error is returned.
pub(crate) fn run_with_timeout(command: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {}", describe(command)))?;
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let status = match wait_deadline(&mut child, now() + timeout)? {
        Some(status) => status,
        None => {
            kill_and_reap(&mut child);
            bail!("{} did not finish within {timeout:?}", describe(command));
        }
    };
    let stdout = stdout.map(join_drain).unwrap_or_default();
    let stderr = stderr.map(join_drain).unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Waits for `child` until `deadline`; `None` if it is still running then.
pub(crate) fn wait_deadline(
    child: &mut Child,
    deadline: Instant,
) -> anyhow::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child process")? {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(now());
        if left.is_zero() {
            return Ok(None);
        }
        thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// SIGKILLs `child` (by its PID, through std) and reaps it.
pub(crate) fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The command line, for error messages.
pub(crate) fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    format!("`{line}`")
}

fn drain<R: Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn join_drain(handle: thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    handle.join().unwrap_or_default()
}
