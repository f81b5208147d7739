//! The network map in a real browser: headless Chromium, driven through
//! chromedriver (W3C WebDriver over plain HTTP/JSON), loads the map of a
//! running three-node overlay, finds every node and link on it, the path to
//! h1 and the multicast tree of a group, then the h0–h1 underlay is cut
//! (blackhole routes) and the map must show the link down and the path to
//! h1 going through h2. Screenshots before and after are saved under
//! `target/tmp/` (paths printed).
//!
//! chromedriver and Chromium run inside h0's network namespace (`ip netns
//! exec`), where the daemon's API listens on 127.0.0.1:4880; the test
//! talks to chromedriver on a connection opened inside that namespace. The
//! browser opens the map as a user would, with the URL `weft map` prints
//! (the API's token in it, traded for a cookie by the page).
//! They are started in their own process group and stopped by it (session
//! closed first, then SIGTERM, then SIGKILL after a deadline), also when
//! the test panics.
//!
//! Needs root, `chromium` and `chromedriver` (Debian: chromium,
//! chromium-driver; `scripts/install-test-deps.sh` installs them). Without
//! the browser the test fails when `CI=true` and otherwise prints a notice
//! and passes. Every wait has a deadline.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

#[path = "support/http.rs"]
mod http;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use weft::testbed::{Host, Testbed, TestbedOptions, is_root};

const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// The map must show the overlay this soon after the page loads.
const MAP_TIMEOUT: Duration = Duration::from_secs(45);
/// ... and the cut this soon after it is made.
const CUT_TIMEOUT: Duration = Duration::from_secs(30);
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
const DRIVER_STOP_TIMEOUT: Duration = Duration::from_secs(5);
const DRIVER_PORT: u16 = 9515;
const GROUP: &str = "239.8.8.8";

#[allow(clippy::disallowed_methods)] // tests measure real time
fn now() -> Instant {
    Instant::now()
}

fn program_exists(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// chromedriver (and the Chromium it starts) in a host's namespace.
struct Driver<'a> {
    host: &'a Host,
    child: Child,
    session: Option<String>,
    profile: PathBuf,
}

impl<'a> Driver<'a> {
    fn start(host: &'a Host) -> anyhow::Result<Self> {
        let mut command = host.command("chromedriver");
        command
            .arg(format!("--port={DRIVER_PORT}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().context("starting chromedriver")?;
        let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("browser-map-profile-{}", std::process::id()));
        let mut driver = Self {
            host,
            child,
            session: None,
            profile,
        };
        let deadline = now() + DRIVER_START_TIMEOUT;
        loop {
            let last = match driver.call("GET", "/status", None) {
                Ok(status) if status["value"]["ready"] == true => break,
                Ok(status) => status.to_string(),
                Err(error) => format!("{error:#}"),
            };
            if let Ok(Some(exit)) = driver.child.try_wait() {
                bail!("chromedriver exited: {exit}");
            }
            if now() >= deadline {
                bail!("chromedriver did not become ready in {DRIVER_START_TIMEOUT:?}: {last}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = serde_json::json!({ "capabilities": { "alwaysMatch": {
            "goog:chromeOptions": {
                "binary": chromium_binary(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-crash-reporter",
                    "--disable-breakpad", "--no-first-run",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", driver.profile.display()),
                ],
            },
        }}});
        let session = driver.call("POST", "/session", Some(&capabilities))?;
        let id = session["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no session: {session}"))?
            .to_owned();
        driver.session = Some(id);
        Ok(driver)
    }

    fn address() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], DRIVER_PORT))
    }

    /// One WebDriver call; the answer's JSON.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let stream = self.host.enter(|| http::connect(Self::address()))??;
        let body = body.map(serde_json::Value::to_string);
        let reply = http::request(stream, method, path, body.as_deref())?;
        let value = reply.json()?;
        if reply.status != 200 {
            bail!("{method} {path}: {} {value}", reply.status);
        }
        Ok(value)
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().unwrap_or(""))
    }

    fn navigate(&self, url: &str) -> anyhow::Result<()> {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(&serde_json::json!({ "url": url })),
        )
        .map(drop)
    }

    /// Runs `script` in the page; it returns a JSON string.
    fn eval_json(&self, script: &str) -> anyhow::Result<serde_json::Value> {
        let answer = self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(&serde_json::json!({ "script": script, "args": [] })),
        )?;
        let text = answer["value"]
            .as_str()
            .with_context(|| format!("the script returned {answer}"))?;
        Ok(serde_json::from_str(text)?)
    }

    fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let answer = self.call("GET", &self.session_path("/screenshot"), None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(answer["value"].as_str().context("no screenshot")?)?;
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png)?;
        Ok(path)
    }
}

impl Drop for Driver<'_> {
    fn drop(&mut self) {
        if self.session.is_some() {
            let _ = self.call("DELETE", &self.session_path(""), None);
        }
        // The group is chromedriver's (process_group(0)): it and the
        // browser processes it started, nothing else.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let group = Pid::from_raw(pid);
            let _ = killpg(group, Signal::SIGTERM);
            let deadline = now() + DRIVER_STOP_TIMEOUT;
            while now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn chromium_binary() -> String {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.to_owned();
        }
    }
    "chromium".to_owned()
}

/// What the page shows, read through its data- hooks.
const READ_MAP: &str = r#"
const q = (s) => [...document.querySelectorAll(s)];
return JSON.stringify({
  ready: document.body.getAttribute('data-ready') === '1',
  live: document.getElementById('live').getAttribute('data-live'),
  nodes: q('g[data-node]').map(e => e.getAttribute('data-node')).sort(),
  links: q('line[data-link]').map(e => ({
    key: e.getAttribute('data-link'),
    state: e.getAttribute('data-state'),
    path: e.getAttribute('data-path') === '1',
    tree: e.getAttribute('data-tree') === '1',
  })),
  peers: q('tr[data-peer]').map(e => e.getAttribute('data-peer')).sort(),
  events: q('#events li').length,
  path: document.getElementById('path-info').textContent,
  tree: document.getElementById('tree-info').textContent,
});
"#;

fn link<'v>(map: &'v serde_json::Value, key: &str) -> Option<&'v serde_json::Value> {
    map["links"]
        .as_array()?
        .iter()
        .find(|link| link["key"] == key)
}

fn is(map: &serde_json::Value, key: &str, field: &str, value: &serde_json::Value) -> bool {
    link(map, key).is_some_and(|link| &link[field] == value)
}

/// Polls the page until `condition` holds, for at most `timeout`.
fn wait_for_map(
    driver: &Driver<'_>,
    timeout: Duration,
    what: &str,
    condition: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = now() + timeout;
    loop {
        let last = match driver.eval_json(READ_MAP) {
            Ok(map) if condition(&map) => return map,
            Ok(map) => map,
            Err(error) => serde_json::json!({ "error": format!("{error:#}") }),
        };
        if now() >= deadline {
            let shot = driver.screenshot("weft-map-failed.png");
            panic!(
                "the map did not show {what} within {timeout:?}; it shows {last:#}\nscreenshot: {shot:?}\n{}",
                driver.host.log_tail(20)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_map_shows_the_overlay_and_a_cut_link() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    if !program_exists("chromedriver") || !program_exists("chromium") {
        let message = "chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver; scripts/install-test-deps.sh does it)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI: {message}"
        );
        weft::testbed::skip("{message}");
        return;
    }
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options.log_level = "debug".to_owned();
    let testbed = Testbed::new(3, options).expect("building the test bed");
    testbed
        .wait_established(ESTABLISH_TIMEOUT)
        .expect("sessions");
    for host in testbed.hosts() {
        let answer = host
            .request(&serde_json::json!({ "command": "group_join", "group": GROUP }))
            .unwrap();
        assert_eq!(answer["ok"], true, "{answer}");
    }
    let h0 = testbed.host(0);
    let driver = Driver::start(h0).expect("starting chromedriver and chromium");
    let token = h0.api_token().unwrap();
    driver
        .navigate(&format!(
            "http://127.0.0.1:4880/?token={token}&destination=h1&group={GROUP}"
        ))
        .unwrap();

    let pairs = ["h0|h1", "h0|h2", "h1|h2"];
    let up = serde_json::json!("up");
    let yes = serde_json::json!(true);
    let map = wait_for_map(
        &driver,
        MAP_TIMEOUT,
        "every node and link up, the direct path to h1 and the group's tree",
        |map| {
            map["ready"] == true
                && map["nodes"] == serde_json::json!(["h0", "h1", "h2"])
                && map["peers"] == serde_json::json!(["h1", "h2"])
                && pairs.iter().all(|key| is(map, key, "state", &up))
                && is(map, "h0|h1", "path", &yes)
                && map["links"]
                    .as_array()
                    .is_some_and(|links| links.iter().any(|link| link["tree"] == true))
        },
    );
    // The page traded the token for a cookie: it is gone from the URL.
    let href = driver
        .eval_json("return JSON.stringify(window.location.href);")
        .unwrap();
    assert!(
        href.as_str().is_some_and(|h| !h.contains("token=")),
        "{href}"
    );
    let before = driver.screenshot("weft-map.png").unwrap();
    eprintln!("map of the overlay: {}", before.display());
    eprintln!("{}; {}", map["path"], map["tree"]);

    let cut_at = now();
    testbed.blackhole_pair(0, 1).unwrap();
    let map = wait_for_map(
        &driver,
        CUT_TIMEOUT,
        "the h0-h1 link down and the path to h1 through h2",
        |map| {
            is(map, "h0|h1", "state", &serde_json::json!("down"))
                && is(map, "h0|h2", "path", &yes)
                && is(map, "h1|h2", "path", &yes)
                && !is(map, "h0|h1", "path", &yes)
        },
    );
    eprintln!(
        "the map showed the cut after {:?}: {}",
        now().saturating_duration_since(cut_at),
        map["path"]
    );
    let after = driver.screenshot("weft-map-cut.png").unwrap();
    eprintln!("map after the cut: {}", after.display());
    drop(driver);
    testbed.unblackhole_pair(0, 1).unwrap();
}
