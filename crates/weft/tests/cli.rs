//! The `weft` command as a user meets it, without root: config errors that
//! point at the mistake, `weft init`, `weft ca init` / `weft ca sign`, and
//! the commands that talk to a daemon when none is running.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use weft::config::Config;
use weft_core::{CaCertificate, Certificate, PublicKey};

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("weft-cli-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const NODE: &str = "[node]\nkey = \"node.key\"\ncertificate = \"node.crt\"\nca = \"ca.crt\"\n";

/// Runs `weft up` on a config with `text` and returns its error output.
fn up_error(text: &str) -> (String, String) {
    let dir = TempDir::new("config");
    let file = dir.path().join("weft.toml");
    std::fs::write(&file, text).unwrap();
    let output = weft(&["up", "--config", file.to_str().unwrap()]);
    assert!(!output.status.success());
    (stderr(&output), file.display().to_string())
}

#[test]
fn syntax_error_names_file_line_and_key() {
    let (error, file) = up_error(&format!("{NODE}listen = 198.18.0.1:4800\n"));
    assert!(error.contains(&format!("{file}:5:")), "{error}");
    assert!(error.contains("node.listen"), "{error}");
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let (error, file) = up_error(&format!("{NODE}\n[tun]\nname = \"weft0\"\nmut = 1400\n"));
    assert!(
        error.contains(&format!("{file}:8:1: tun.mut: unknown field `mut`")),
        "{error}"
    );
}

#[test]
fn bad_endpoint_names_file_line_and_key() {
    let (error, file) = up_error(&format!(
        "{NODE}\n[[peers]]\nname = \"b\"\nendpoint = \"198.18.0.2\"\n"
    ));
    assert!(
        error.contains(&format!(
            "{file}:8:12: peers[0].endpoint: '198.18.0.2' is not an IP address with a port"
        )),
        "{error}"
    );
}

#[test]
fn missing_certificate_file_names_its_key() {
    let dir = TempDir::new("nocert");
    let init = weft(&["init", "--dir", dir.path().to_str().unwrap()]);
    assert!(init.status.success(), "{}", stderr(&init));
    let file = dir.path().join("weft.toml");
    let output = weft(&["up", "--config", file.to_str().unwrap()]);
    let error = stderr(&output);
    assert!(!output.status.success());
    assert!(error.contains("node.certificate: cannot read"), "{error}");
    assert!(error.contains("node.crt"), "{error}");
}

#[test]
fn init_writes_a_private_key_and_a_config_that_parses() {
    let dir = TempDir::new("init");
    let output = weft(&["init", "--dir", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("weft ca sign"),
        "no next steps in: {stdout}"
    );

    let key = dir.path().join("node.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    PublicKey::from_pem(&std::fs::read_to_string(dir.path().join("node.pub")).unwrap()).unwrap();
    let config = Config::load(&dir.path().join("weft.toml")).unwrap();
    assert_eq!(config.node.key.path, key);

    let again = weft(&["init", "--dir", dir.path().to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    let forced = weft(&["init", "--dir", dir.path().to_str().unwrap(), "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
}

#[test]
fn ca_signs_a_certificate_that_verifies() {
    let dir = TempDir::new("ca");
    let d = dir.path().to_str().unwrap();
    let ca = weft(&[
        "ca",
        "init",
        "--dir",
        &format!("{d}/ca"),
        "--name",
        "testnet",
    ]);
    assert!(ca.status.success(), "{}", stderr(&ca));
    let ca_key = dir.path().join("ca/ca.key");
    assert_eq!(
        std::fs::metadata(&ca_key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let node = weft(&["init", "--dir", &format!("{d}/a")]);
    assert!(node.status.success(), "{}", stderr(&node));

    let out = dir.path().join("a/node.crt");
    let sign = weft(&[
        "ca",
        "sign",
        "--ca-key",
        ca_key.to_str().unwrap(),
        "--public-key",
        &format!("{d}/a/node.pub"),
        "--name",
        "db-1",
        "--ipv4",
        "198.19.0.1/16",
        "--groups",
        "db,ops",
        "--days",
        "30",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(sign.status.success(), "{}", stderr(&sign));

    let ca_cert =
        CaCertificate::from_pem(&std::fs::read_to_string(dir.path().join("ca/ca.crt")).unwrap())
            .unwrap();
    let cert = Certificate::from_pem(&std::fs::read_to_string(&out).unwrap()).unwrap();
    cert.verify(&ca_cert, weft::pki::unix_now().unwrap())
        .unwrap();
    assert_eq!(cert.name(), "db-1");
    assert_eq!(
        cert.ipv4().map(|n| n.to_string()).as_deref(),
        Some("198.19.0.1/16")
    );
    assert_eq!(cert.groups(), ["db", "ops"]);
    let public =
        PublicKey::from_pem(&std::fs::read_to_string(dir.path().join("a/node.pub")).unwrap())
            .unwrap();
    assert_eq!(cert.public_key(), public);

    // The signed node's config now yields a core config.
    std::fs::copy(dir.path().join("ca/ca.crt"), dir.path().join("a/ca.crt")).unwrap();
    let config = Config::load(&dir.path().join("a/weft.toml")).unwrap();
    config.node_config(weft::pki::unix_now().unwrap()).unwrap();
}

#[test]
fn signing_bad_names_and_addresses_fails_clearly() {
    let dir = TempDir::new("badname");
    let d = dir.path().to_str().unwrap();
    assert!(weft(&["ca", "init", "--dir", d]).status.success());
    assert!(weft(&["init", "--dir", d]).status.success());
    let sign = |name: &str, ipv4: &str| {
        weft(&[
            "ca",
            "sign",
            "--ca-key",
            &format!("{d}/ca.key"),
            "--public-key",
            &format!("{d}/node.pub"),
            "--name",
            name,
            "--ipv4",
            ipv4,
            "--out",
            &format!("{d}/node.crt"),
        ])
    };
    let bad_name = sign("Web Server", "198.19.0.1/16");
    assert!(!bad_name.status.success());
    let error = stderr(&bad_name);
    assert!(
        error.contains("cannot sign a certificate for 'Web Server': invalid name"),
        "{error}"
    );
    let bad_ipv4 = sign("web", "198.19.0.1");
    assert!(!bad_ipv4.status.success());
    assert!(
        stderr(&bad_ipv4).contains("--ipv4: '198.19.0.1' is not ADDRESS/PREFIX"),
        "{}",
        stderr(&bad_ipv4)
    );
    assert!(!dir.path().join("node.crt").exists());

    let bad_ca = weft(&[
        "ca",
        "init",
        "--dir",
        &format!("{d}/other"),
        "--name",
        "My Net",
    ]);
    assert!(!bad_ca.status.success());
    assert!(
        stderr(&bad_ca).contains("cannot create the CA 'My Net': invalid name"),
        "{}",
        stderr(&bad_ca)
    );
}

#[test]
fn the_ca_refuses_a_name_or_address_it_signed_for_another_key_unless_forced() {
    let dir = TempDir::new("ledger");
    let d = dir.path().to_str().unwrap();
    assert!(weft(&["ca", "init", "--dir", d]).status.success());
    for node in ["a", "b"] {
        assert!(
            weft(&["init", "--dir", &format!("{d}/{node}")])
                .status
                .success()
        );
    }
    let sign = |node: &str, name: &str, ipv4: &str, extra: &[&str]| {
        let mut args = vec![
            "ca".to_owned(),
            "sign".into(),
            "--ca-key".into(),
            format!("{d}/ca.key"),
            "--public-key".into(),
            format!("{d}/{node}/node.pub"),
            "--name".into(),
            name.into(),
            "--ipv4".into(),
            ipv4.into(),
            "--out".into(),
            format!("{d}/{node}/node.crt"),
            "--force".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        weft(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let first = sign("a", "c", "198.19.0.3/16", &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    // The same key again (a changed group, a lost file): allowed.
    let again = sign("a", "c", "198.19.0.3/16", &[]);
    assert!(again.status.success(), "{}", stderr(&again));

    let same_name = sign("b", "c", "198.19.0.4/16", &[]);
    assert!(!same_name.status.success());
    let error = stderr(&same_name);
    assert!(
        error.contains("already signed the name 'c' for another key")
            && error.contains("--force-claim"),
        "{error}"
    );
    let same_address = sign("b", "d", "198.19.0.3/16", &[]);
    assert!(!same_address.status.success());
    let error = stderr(&same_address);
    assert!(
        error.contains("already signed the IPv4 address 198.19.0.3 for another key ('c'"),
        "{error}"
    );
    assert!(!dir.path().join("b/node.crt").exists(), "nothing written");

    let forced = sign("b", "c", "198.19.0.3/16", &["--force-claim"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let ledger = std::fs::read_to_string(dir.path().join("ca.ledger")).unwrap();
    let lines: Vec<&str> = ledger.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 3, "{ledger}");
    assert!(
        lines.iter().all(|l| l.contains(" c 198.19.0.3/16 ")),
        "{ledger}"
    );
}

#[test]
fn status_without_a_daemon_says_so() {
    let dir = TempDir::new("status");
    let socket = dir.path().join("weft.sock");
    let output = weft(&["status", "--socket", socket.to_str().unwrap()]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains(&format!(
            "is the daemon running? no control socket at {}",
            socket.display()
        )),
        "{error}"
    );
}

#[test]
fn routing_commands_without_a_daemon_say_so() {
    let dir = TempDir::new("routes");
    let socket = dir.path().join("weft.sock");
    let socket = socket.to_str().unwrap();
    for args in [
        &["routes", "--socket", socket][..],
        &["routes", "--json", "--socket", socket],
        &["trace", "b", "--socket", socket],
        &[
            "trace", "b", "--metric", "loss", "--json", "--socket", socket,
        ],
        &["route", "pin", "b", "via", "c,d", "--socket", socket],
        &["route", "pin", "b", "--via", "c,d", "--socket", socket],
        &["route", "unpin", "b", "--socket", socket],
        &["reload", "--socket", socket],
    ] {
        let output = weft(args);
        assert!(!output.status.success(), "{args:?}");
        let error = stderr(&output);
        assert!(
            error.contains(&format!(
                "is the daemon running? no control socket at {socket}"
            )),
            "{args:?}: {error}"
        );
    }
}

#[test]
fn routing_commands_find_the_socket_through_the_config() {
    let dir = TempDir::new("routes-config");
    let socket = dir.path().join("ctl.sock");
    let file = dir.path().join("weft.toml");
    std::fs::write(
        &file,
        format!("{NODE}[control]\nsocket = \"{}\"\n", socket.display()),
    )
    .unwrap();
    let output = weft(&["routes", "--config", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains(&format!("no control socket at {}", socket.display())),
        "{error}"
    );
}

#[test]
fn route_pin_without_a_path_explains_the_syntax() {
    let output = weft(&["route", "pin", "b", "--socket", "/nonexistent/weft.sock"]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains("weft route pin DEST via NODE[,NODE...]"),
        "{error}"
    );
}

#[test]
fn routing_section_parses() {
    let dir = TempDir::new("routing");
    let file = dir.path().join("weft.toml");
    std::fs::write(
        &file,
        format!(
            "{NODE}\n[routing]\nprobe_idle = \"2s\"\nprobe_active = \"50ms\"\nrelaying = false\n\n[[pins]]\ndestination = \"b\"\nvia = [\"c\"]\n"
        ),
    )
    .unwrap();
    let config = Config::load(&file).unwrap();
    assert_eq!(config.routing.probe_idle, std::time::Duration::from_secs(2));
    assert_eq!(
        config.routing.probe_active,
        std::time::Duration::from_millis(50)
    );
    assert!(!config.routing.relaying);
    assert_eq!(
        config.routing.hold_down,
        weft_core::RoutingConfig::default().hold_down
    );
    assert_eq!(config.pins[0].via, ["c"]);
}

#[test]
fn bad_duration_in_routing_names_file_line_and_key() {
    let (error, file) = up_error(&format!("{NODE}\n[routing]\nprobe_idle = \"soon\"\n"));
    assert!(
        error.contains(&format!(
            "{file}:7:14: routing.probe_idle: 'soon' is not a duration"
        )),
        "{error}"
    );
}

#[test]
fn an_error_says_its_cause_once() {
    let dir = TempDir::new("twice");
    let output = weft(&["up", "--config", dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert_eq!(
        error.matches("Is a directory (os error 21)").count(),
        1,
        "{error}"
    );
}

#[test]
fn a_file_without_a_ca_key_is_reported_as_missing_the_key_block() {
    let dir = TempDir::new("cakey");
    let d = dir.path().to_str().unwrap();
    assert!(weft(&["init", "--dir", d]).status.success());
    let not_a_key = dir.path().join("ca.key");
    std::fs::write(&not_a_key, "hello\n").unwrap();
    let output = weft(&[
        "ca",
        "sign",
        "--ca-key",
        not_a_key.to_str().unwrap(),
        "--public-key",
        &format!("{d}/node.pub"),
        "--name",
        "a",
        "--out",
        &format!("{d}/node.crt"),
    ]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert_eq!(
        error
            .matches("no '-----BEGIN WEFT CA SECRET KEY-----' block found")
            .count(),
        1,
        "{error}"
    );
    assert!(!error.contains("certificate"), "{error}");
}

#[test]
fn a_stale_control_socket_is_called_stale() {
    let dir = TempDir::new("stale");
    let socket = dir.path().join("weft.sock");
    // Bound and closed: the file stays, nobody listens, as after a daemon
    // was killed.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let output = weft(&["status", "--socket", socket.to_str().unwrap()]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains(&format!(
            "the control socket {} is stale: the daemon is not running",
            socket.display()
        )),
        "{error}"
    );
}

/// Runs `weft` with `env` set (and `WEFT_CONFIG` and `RUST_LOG` removed
/// unless `env` sets them).
fn weft_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command
        .args(args)
        .env_remove("WEFT_CONFIG")
        .env_remove("RUST_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

#[test]
fn commands_find_the_node_through_weft_config() {
    let dir = TempDir::new("env-config");
    let socket = dir.path().join("ctl.sock");
    let file = dir.path().join("weft.toml");
    std::fs::write(
        &file,
        format!("{NODE}[control]\nsocket = \"{}\"\n", socket.display()),
    )
    .unwrap();
    for args in [
        &["status"][..],
        &["qos"],
        &["routes"],
        &["trace", "b"],
        &["lookup", "b"],
        &["group", "list"],
        &["ping", "b"],
    ] {
        let output = weft_env(args, &[("WEFT_CONFIG", file.to_str().unwrap())]);
        assert!(!output.status.success(), "{args:?}");
        let error = stderr(&output);
        assert!(
            error.contains(&format!("no control socket at {}", socket.display())),
            "{args:?}: {error}"
        );
    }
}

#[test]
fn a_missing_config_says_where_its_name_came_from() {
    let output = weft_env(
        &["status"],
        &[("WEFT_CONFIG", "/nonexistent/weft-test/weft.toml")],
    );
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error
            .contains("no config file at /nonexistent/weft-test/weft.toml (named by $WEFT_CONFIG)"),
        "{error}"
    );
    assert!(error.contains("--config FILE"), "{error}");

    if Path::new(weft::config::DEFAULT_CONFIG).exists() {
        weft::testbed::skip("the default-config part: /etc/weft/weft.toml exists here");
        return;
    }
    let output = weft_env(&["routes"], &[]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains(
            "no config file at /etc/weft/weft.toml (the default; $WEFT_CONFIG is not set)"
        ),
        "{error}"
    );
}

#[test]
fn ping_takes_names_and_finds_them_through_the_node() {
    let dir = TempDir::new("ping-name");
    let socket = dir.path().join("weft.sock");
    let file = dir.path().join("weft.toml");
    std::fs::write(
        &file,
        format!("{NODE}[control]\nsocket = \"{}\"\n", socket.display()),
    )
    .unwrap();
    for target in ["db1", "db1.weft"] {
        let output = weft(&["ping", target, "--config", file.to_str().unwrap()]);
        assert!(!output.status.success());
        let error = stderr(&output);
        assert!(!error.contains("invalid IP address"), "{target}: {error}");
        assert!(
            error.contains(&format!("no control socket at {}", socket.display())),
            "{target}: {error}"
        );
    }

    // A stand-in daemon that answers one lookup with a record whose overlay
    // IPv4 address is the loopback address.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let daemon = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = String::new();
        BufReader::new(&stream).read_line(&mut request).unwrap();
        let answer = serde_json::json!({
            "ok": true,
            "lookup": {
                "target": "db1.weft",
                "record": {
                    "name": "db1",
                    "node_id": "00".repeat(32),
                    "overlay_ipv6": "::1",
                    "overlay_ipv4": "127.0.0.1",
                    "endpoints": [],
                    "groups": [],
                    "expires_in_secs": 3600,
                    "sequence": 1
                },
                "hops": 0,
                "elapsed_ms": 0.1,
                "queries": []
            }
        });
        stream.write_all(format!("{answer}\n").as_bytes()).unwrap();
        serde_json::from_str::<serde_json::Value>(&request).unwrap()
    });
    let output = weft(&[
        "ping",
        "db1.weft",
        "--socket",
        socket.to_str().unwrap(),
        "--count",
        "1",
    ]);
    let request = daemon.join().unwrap();
    assert_eq!(
        request,
        serde_json::json!({ "command": "lookup", "target": "db1.weft" })
    );
    let error = stderr(&output);
    if error.contains("cannot open an ICMP socket") {
        weft::testbed::skip("the ping part: no ICMP socket");
        return;
    }
    assert!(output.status.success(), "{error}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("PING db1.weft (127.0.0.1)"), "{text}");
    assert!(text.contains("1 received"), "{text}");
}

/// A node directory with a CA, keys, a signed certificate and the CA's
/// certificate beside `weft.toml`, whose control socket is in the directory.
fn signed_node(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let d = dir.path().to_str().unwrap();
    assert!(
        weft(&["ca", "init", "--dir", &format!("{d}/ca")])
            .status
            .success()
    );
    assert!(weft(&["init", "--dir", d]).status.success());
    let sign = weft(&[
        "ca",
        "sign",
        "--ca-key",
        &format!("{d}/ca/ca.key"),
        "--public-key",
        &format!("{d}/node.pub"),
        "--name",
        "db-1",
        "--out",
        &format!("{d}/node.crt"),
    ]);
    assert!(sign.status.success(), "{}", stderr(&sign));
    std::fs::copy(dir.path().join("ca/ca.crt"), dir.path().join("ca.crt")).unwrap();
    let config = dir.path().join("weft.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let socket = dir.path().join("weft.sock");
    std::fs::write(
        &config,
        text.replace(
            "socket = \"/run/weft/weft0.sock\"",
            &format!("socket = \"{}\"", socket.display()),
        ),
    )
    .unwrap();
    dir
}

#[test]
fn an_unknown_log_level_is_a_config_error() {
    let (error, file) = up_error(&format!("{NODE}\n[log]\nlevel = \"verbose\"\n"));
    assert!(
        error.contains(&format!(
            "{file}:7:9: log.level: 'verbose' is not a log level"
        )),
        "{error}"
    );
    let (error, _) = up_error(&format!("{NODE}\n[log]\nlevel = \"weft=loud,info\"\n"));
    assert!(
        error.contains("log.level: 'loud' in 'weft=loud' is not a log level"),
        "{error}"
    );
}

#[test]
fn an_unknown_level_in_rust_log_stops_the_daemon_before_it_starts() {
    let dir = signed_node("rustlog");
    let config = dir.path().join("weft.toml");
    let output = weft_env(
        &["up", "--check-config", "--config", config.to_str().unwrap()],
        &[("RUST_LOG", "verbose")],
    );
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains("RUST_LOG: 'verbose' is not a log level"),
        "{error}"
    );
    let output = weft_env(
        &["up", "--check-config", "--config", config.to_str().unwrap()],
        &[("RUST_LOG", "weft=debug,warn")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn a_secret_key_other_users_can_read_is_refused_unless_allowed() {
    let dir = signed_node("keymode");
    let config = dir.path().join("weft.toml");
    let key = dir.path().join("node.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = weft(&["up", "--check-config", "--config", config.to_str().unwrap()]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(error.contains("node.key"), "{error}");
    assert!(error.contains("mode 0644"), "{error}");
    assert!(
        error.contains(&format!("chmod 600 {}", key.display())),
        "{error}"
    );

    let output = weft(&[
        "up",
        "--check-config",
        "--allow-exposed-key",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn check_config_reads_every_file_and_says_what_the_node_would_be() {
    let dir = signed_node("check");
    let config = dir.path().join("weft.toml");
    let output = weft(&["up", "--check-config", "--config", config.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(": ok: node db-1 (id "), "{text}");

    std::fs::remove_file(dir.path().join("ca.crt")).unwrap();
    let output = weft(&["up", "--check-config", "--config", config.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("node.ca: cannot read"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, expect) in [
        ("bash", "complete -F _weft"),
        ("zsh", "#compdef weft"),
        ("fish", "complete -c weft"),
    ] {
        let output = weft(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(expect), "{shell}: {text}");
        assert!(text.contains("check-config"), "{shell}: no weft up flags");
    }
}

#[test]
fn man_pages_cover_every_subcommand() {
    let output = weft(&["man"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with(".ie \\n(.g .ds Aq") || text.contains(".TH weft 1"),
        "{text}"
    );
    assert!(text.contains("WEFT_CONFIG"), "{text}");

    let dir = TempDir::new("man");
    let output = weft(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    for page in [
        "weft.1",
        "weft-up.1",
        "weft-status.1",
        "weft-ca-sign.1",
        "weft-group-join.1",
        "weft-reload.1",
        "weft-completions.1",
    ] {
        assert!(dir.path().join(page).exists(), "{page}");
    }
    let up = std::fs::read_to_string(dir.path().join("weft-up.1")).unwrap();
    assert!(up.contains("check\\-config"), "{up}");
}

#[test]
fn init_can_write_only_keys_and_print_the_packaged_example() {
    let dir = TempDir::new("keyonly");
    let d = dir.path().to_str().unwrap();
    let example = weft(&["init", "--print-example"]);
    assert!(example.status.success(), "{}", stderr(&example));
    let text = String::from_utf8_lossy(&example.stdout).into_owned();
    assert!(!text.contains("This node: id"), "{text}");
    std::fs::write(dir.path().join("weft.toml"), &text).unwrap();
    let config = Config::load(&dir.path().join("weft.toml")).unwrap();
    assert_eq!(config.node.key.path, dir.path().join("node.key"));

    let keys = weft(&["init", "--dir", d, "--key-only"]);
    assert!(keys.status.success(), "{}", stderr(&keys));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("weft.toml")).unwrap(),
        text
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("node.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let again = weft(&["init", "--dir", d, "--key-only"]);
    assert!(!again.status.success());
}

/// A CA in `dir/ca` and a node `a` with a certificate valid `days` days,
/// made with the CLI; returns the paths of ca.key, ca.crt and node.crt.
fn ca_and_node(dir: &TempDir, ca_name: &str, days: &str) -> (PathBuf, PathBuf, PathBuf) {
    let d = dir.path().to_str().unwrap();
    let ca_dir = format!("{d}/{ca_name}");
    let ca = weft(&["ca", "init", "--dir", &ca_dir, "--name", ca_name]);
    assert!(ca.status.success(), "{}", stderr(&ca));
    let node_dir = format!("{d}/a-{ca_name}");
    let node = weft(&["init", "--dir", &node_dir]);
    assert!(node.status.success(), "{}", stderr(&node));
    let out = PathBuf::from(format!("{node_dir}/node.crt"));
    let sign = weft(&[
        "ca",
        "sign",
        "--ca-key",
        &format!("{ca_dir}/ca.key"),
        "--public-key",
        &format!("{node_dir}/node.pub"),
        "--name",
        "db-1",
        "--ipv4",
        "198.19.0.1/16",
        "--groups",
        "db,ops",
        "--days",
        days,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(sign.status.success(), "{}", stderr(&sign));
    (
        PathBuf::from(format!("{ca_dir}/ca.key")),
        PathBuf::from(format!("{ca_dir}/ca.crt")),
        out,
    )
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn cert_print_shows_a_node_certificate_and_whether_it_verifies() {
    let dir = TempDir::new("print");
    let (_, ca_crt, node_crt) = ca_and_node(&dir, "testnet", "30");
    let (_, other_ca, _) = ca_and_node(&dir, "othernet", "30");
    let cert = Certificate::from_pem(&std::fs::read_to_string(&node_crt).unwrap()).unwrap();
    let ca = CaCertificate::from_pem(&std::fs::read_to_string(&ca_crt).unwrap()).unwrap();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();

    let text = weft(&["cert", "print", node_crt.to_str().unwrap()]);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    for expected in [
        "node certificate".to_owned(),
        "db-1".to_owned(),
        cert.node_id().to_string(),
        cert.node_id().overlay_ipv6().to_string(),
        "198.19.0.1/16".to_owned(),
        "db, ops".to_owned(),
        hex(&ca.fingerprint()),
        hex(&cert.fingerprint()),
    ] {
        assert!(text.contains(&expected), "no {expected:?} in:\n{text}");
    }
    assert!(
        text.contains("(expires in 29 days)") || text.contains("(expires in 30 days)"),
        "{text}"
    );
    assert!(!text.contains("verifies"), "{text}");

    // Against its CA: verifies; as JSON, every field.
    let json = weft(&[
        "cert",
        "print",
        node_crt.to_str().unwrap(),
        "--json",
        "--ca",
        ca_crt.to_str().unwrap(),
    ]);
    assert!(json.status.success(), "{}", stderr(&json));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["kind"], "node");
    assert_eq!(value["name"], "db-1");
    assert_eq!(value["node_id"], cert.node_id().to_string());
    assert_eq!(value["overlay_ipv4"], "198.19.0.1/16");
    assert_eq!(value["groups"], serde_json::json!(["db", "ops"]));
    assert_eq!(value["not_after"], cert.not_after());
    assert_eq!(value["issuer"], hex(&ca.fingerprint()));
    assert_eq!(value["fingerprint"], hex(&cert.fingerprint()));
    assert_eq!(value["verification"]["ok"], true);
    assert_eq!(value["verification"]["ca"], "testnet");

    // Against another CA: says why, and exits with status 1.
    let wrong = weft(&[
        "cert",
        "print",
        node_crt.to_str().unwrap(),
        "--ca",
        other_ca.to_str().unwrap(),
    ]);
    assert_eq!(wrong.status.code(), Some(1));
    let text = stdout(&wrong);
    assert!(
        text.contains("verifies")
            && text.contains("NO, under CA 'othernet'")
            && text.contains("issued by another CA"),
        "{text}"
    );
}

#[test]
fn cert_print_reads_ca_certificates_and_ca_keys() {
    let dir = TempDir::new("printca");
    let (ca_key, ca_crt, _) = ca_and_node(&dir, "testnet", "30");
    let ca = CaCertificate::from_pem(&std::fs::read_to_string(&ca_crt).unwrap()).unwrap();
    for file in [&ca_crt, &ca_key] {
        let output = weft(&[
            "cert",
            "print",
            file.to_str().unwrap(),
            "--json",
            "--ca",
            ca_crt.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(value["kind"], "ca");
        assert_eq!(value["name"], "testnet");
        assert_eq!(value["not_after"], ca.not_after());
        assert_eq!(value["verification"]["ok"], true);
    }
    let garbage = dir.path().join("garbage.txt");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let output = weft(&["cert", "print", garbage.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("holds no weft certificate"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn ca_renew_resigns_the_same_key_with_a_new_validity() {
    let dir = TempDir::new("renew");
    let (ca_key, ca_crt, node_crt) = ca_and_node(&dir, "testnet", "1");
    let old = Certificate::from_pem(&std::fs::read_to_string(&node_crt).unwrap()).unwrap();
    let args = |out: &Path, force: bool| {
        let mut args = vec![
            "ca".to_owned(),
            "renew".to_owned(),
            "--ca-key".to_owned(),
            ca_key.display().to_string(),
            "--certificate".to_owned(),
            node_crt.display().to_string(),
            "--days".to_owned(),
            "90".to_owned(),
            "--out".to_owned(),
            out.display().to_string(),
        ];
        if force {
            args.push("--force".to_owned());
        }
        args
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        weft(&args)
    };
    // In place only with --force, as every other command.
    let refused = run(args(&node_crt, false));
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    let renewed = run(args(&node_crt, true));
    assert!(renewed.status.success(), "{}", stderr(&renewed));
    assert!(
        stdout(&renewed).contains("run weft reload there"),
        "{}",
        stdout(&renewed)
    );

    let new = Certificate::from_pem(&std::fs::read_to_string(&node_crt).unwrap()).unwrap();
    let ca = CaCertificate::from_pem(&std::fs::read_to_string(&ca_crt).unwrap()).unwrap();
    new.verify(&ca, weft::pki::unix_now().unwrap()).unwrap();
    assert_eq!(new.public_key(), old.public_key());
    assert_eq!(new.name(), old.name());
    assert_eq!(new.ipv4(), old.ipv4());
    assert_eq!(new.groups(), old.groups());
    assert!(new.not_after() >= old.not_after() + 88 * 86_400);
    assert_ne!(new.fingerprint(), old.fingerprint());

    // Another CA's certificate is not renewed here.
    let (_, _, foreign) = ca_and_node(&dir, "othernet", "30");
    let out = dir.path().join("foreign-renewed.crt");
    let mut foreign_args = args(&out, false);
    foreign_args[5] = foreign.display().to_string();
    let refused = run(foreign_args);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("was not signed by the CA"),
        "{}",
        stderr(&refused)
    );
    assert!(!out.exists());
}

#[test]
fn ca_revoke_writes_the_next_version_of_a_list_that_nodes_load() {
    let dir = TempDir::new("revoke");
    let (ca_key, ca_crt, node_crt) = ca_and_node(&dir, "testnet", "30");
    let (_, other_ca, foreign_crt) = ca_and_node(&dir, "othernet", "30");
    let list = dir.path().join("revocations.crl");
    let revoke = |extra: &[&str]| {
        let mut args = vec!["ca", "revoke", "--ca-key", ca_key.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", list.to_str().unwrap()]);
        weft(&args)
    };
    let first = revoke(&[
        "--certificate",
        node_crt.to_str().unwrap(),
        "--name",
        "old-db",
    ]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("version 1"), "{}", stdout(&first));
    let id = "ab".repeat(32);
    let second = revoke(&["--node-id", &id]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stdout(&second).contains("version 2"), "{}", stdout(&second));

    let print = weft(&[
        "cert",
        "print",
        list.to_str().unwrap(),
        "--json",
        "--ca",
        ca_crt.to_str().unwrap(),
    ]);
    assert!(print.status.success(), "{}", stderr(&print));
    let value: serde_json::Value = serde_json::from_slice(&print.stdout).unwrap();
    assert_eq!(value["kind"], "revocation_list");
    assert_eq!(value["version"], 2);
    assert_eq!(value["name"], "testnet");
    let cert = Certificate::from_pem(&std::fs::read_to_string(&node_crt).unwrap()).unwrap();
    let fingerprint: String = cert
        .fingerprint()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        value["revoked"],
        serde_json::json!([
            format!("node-id {id}"),
            format!("certificate {fingerprint}"),
            "name old-db"
        ])
    );
    assert_eq!(value["verification"]["ok"], true);
    let wrong = weft(&[
        "cert",
        "print",
        list.to_str().unwrap(),
        "--ca",
        other_ca.to_str().unwrap(),
    ]);
    assert_eq!(wrong.status.code(), Some(1));

    // Nothing to revoke, or another CA's certificate: refused.
    let empty = revoke(&[]);
    assert!(!empty.status.success());
    assert!(
        stderr(&empty).contains("say what to revoke"),
        "{}",
        stderr(&empty)
    );
    let foreign = revoke(&["--certificate", foreign_crt.to_str().unwrap()]);
    assert!(!foreign.status.success());
    assert!(
        stderr(&foreign).contains("was not signed by the CA"),
        "{}",
        stderr(&foreign)
    );

    // A node names the list in [pki]; a list of another CA points there.
    let node_dir = dir.path().join("a-testnet");
    std::fs::copy(&ca_crt, node_dir.join("ca.crt")).unwrap();
    let config_file = node_dir.join("weft.toml");
    let mut text = std::fs::read_to_string(&config_file).unwrap();
    text.push_str(&format!(
        "\n[pki]\nrevocations = {:?}\n",
        list.to_str().unwrap()
    ));
    std::fs::write(&config_file, &text).unwrap();
    let config = Config::load(&config_file).unwrap();
    let node_config = config.node_config(weft::pki::unix_now().unwrap()).unwrap();
    assert_eq!(node_config.revocation.list.unwrap().version(), 2);
    let foreign_list = dir.path().join("othernet.crl");
    let other_key = dir.path().join("othernet/ca.key");
    let made = weft(&[
        "ca",
        "revoke",
        "--ca-key",
        other_key.to_str().unwrap(),
        "--name",
        "x",
        "--out",
        foreign_list.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let text = text.replace(list.to_str().unwrap(), foreign_list.to_str().unwrap());
    std::fs::write(&config_file, &text).unwrap();
    let config = Config::load(&config_file).unwrap();
    let error = config
        .node_config(weft::pki::unix_now().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("pki.revocations") && error.contains("issued by another CA"),
        "{error}"
    );
}
