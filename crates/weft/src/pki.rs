//! `weft init` and `weft ca`: node keys, the network CA, certificates.
//!
//! Keys come from the operating system's random source (ring's
//! `SystemRandom`). Secret files (`node.key`, `ca.key`) are created with
//! mode 0600 from the start, never widened afterwards. No command overwrites
//! an existing file unless given `--force`. The library functions here
//! ([`create_node_key`], [`create_ca`], [`sign`], [`issue`]) do the work
//! without printing, so tests and the testbed can call them.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use ring::rand::{SecureRandom, SystemRandom};
use weft_core::{
    CaSecret, CertError, Certificate, CertificateTemplate, Ipv4Net, NodeId, PublicKey,
    RevocationList, RevocationTemplate, SecretKey,
};

use crate::{config, ledger};

/// File names `weft init` writes.
pub const NODE_KEY_FILE: &str = "node.key";
/// The node's public key file.
pub const NODE_PUB_FILE: &str = "node.pub";
/// The node's config file.
pub const CONFIG_FILE: &str = "weft.toml";
/// The CA's secret key file (key and CA certificate).
pub const CA_KEY_FILE: &str = "ca.key";
/// The CA's certificate.
pub const CA_CERT_FILE: &str = "ca.crt";

/// Certificates start this long before they are made, so that hosts whose
/// clocks are slightly behind the signer's accept them at once.
const BACKDATE_SECS: u64 = 60;
const SECS_PER_DAY: u64 = 86_400;

/// Arguments of `weft init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Directory to write `node.key`, `node.pub` and `weft.toml` into.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// Write only `node.key` and `node.pub`, leaving `weft.toml` alone
    /// (the one a package installed, or your own).
    #[arg(long)]
    pub key_only: bool,
    /// Write nothing; print a commented example config for a node whose
    /// files live beside it (what the Debian package installs as
    /// /etc/weft/weft.toml).
    #[arg(long, conflicts_with_all = ["key_only", "force"])]
    pub print_example: bool,
}

/// `weft ca` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum CaCommand {
    /// Create a network CA: `ca.key` (mode 0600) and `ca.crt`.
    Init {
        /// Directory to write into.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The network's name (a DNS label).
        #[arg(long, default_value = "weft")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u64,
        /// Overwrite an existing CA (every certificate it signed stops
        /// being accepted by nodes that trust the new one).
        #[arg(long)]
        force: bool,
    },
    /// Sign a node certificate.
    Sign {
        /// The CA key file written by `weft ca init`.
        #[arg(long)]
        ca_key: PathBuf,
        /// The node's public key file (`node.pub` from `weft init`).
        #[arg(long)]
        public_key: PathBuf,
        /// The node's name (a DNS label).
        #[arg(long)]
        name: String,
        /// Overlay IPv4 address with prefix, e.g. 198.19.0.1/16.
        #[arg(long)]
        ipv4: Option<String>,
        /// Comma-separated groups.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Where to write the certificate.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing certificate file.
        #[arg(long)]
        force: bool,
        /// Sign even though the CA's ledger (`ca.ledger` beside the key)
        /// shows this name or IPv4 address signed for another key.
        #[arg(long)]
        force_claim: bool,
    },
    /// Re-sign a node's certificate: the same key, name, addresses and
    /// groups, valid from now for --days (a running node adopts it on `weft reload`
    /// once it is at the path of its `node.certificate`).
    Renew {
        /// The CA key file written by `weft ca init`.
        #[arg(long)]
        ca_key: PathBuf,
        /// The certificate to renew (it may have expired already).
        #[arg(long)]
        certificate: PathBuf,
        /// Validity in days from now.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Where to write the new certificate (the old file itself, with
        /// --force).
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Revoke certificates: writes the next version of a CA-signed
    /// revocation list with these added. Give it to one node
    /// (`[pki] revocations`); the nodes pass it on to each other.
    Revoke {
        /// The CA key file written by `weft ca init`.
        #[arg(long)]
        ca_key: PathBuf,
        /// Revoke every certificate of this node id (64 hex digits, as
        /// `weft cert print` shows); repeatable.
        #[arg(long = "node-id", value_name = "ID")]
        node_ids: Vec<String>,
        /// Revoke this certificate only (a renewed one of the same key
        /// stays valid); repeatable.
        #[arg(long = "certificate", value_name = "FILE")]
        certificates: Vec<PathBuf>,
        /// Revoke every certificate with this name; repeatable.
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// The current list, extended by this one (default: --out, if it
        /// exists).
        #[arg(long)]
        list: Option<PathBuf>,
        /// Where to write the new list.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite --out when it is not the list being extended.
        #[arg(long)]
        force: bool,
    },
}

/// What `weft ca revoke` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RevokeRequest {
    /// The CA key file.
    pub ca_key: PathBuf,
    /// Node ids to revoke (hex).
    pub node_ids: Vec<String>,
    /// Certificate files to revoke.
    pub certificates: Vec<PathBuf>,
    /// Names to revoke.
    pub names: Vec<String>,
    /// The list to extend (default: `out`, if it exists).
    pub list: Option<PathBuf>,
    /// The file to write.
    pub out: PathBuf,
    /// Overwrite `out` when it is not the list being extended.
    pub force: bool,
}

/// What `weft ca sign` is asked to do.
#[derive(Debug, Clone)]
pub struct SignRequest {
    /// The CA key file.
    pub ca_key: PathBuf,
    /// The node's public key file.
    pub public_key: PathBuf,
    /// The node's name.
    pub name: String,
    /// Its overlay IPv4 address and prefix.
    pub ipv4: Option<Ipv4Net>,
    /// Its groups.
    pub groups: Vec<String>,
    /// Validity in days from now.
    pub days: u64,
    /// The certificate file to write.
    pub out: PathBuf,
    /// Overwrite `out` if it exists.
    pub force: bool,
    /// Sign a name or IPv4 address the ledger shows signed for another key.
    pub force_claim: bool,
}

/// Runs `weft init`.
#[allow(clippy::print_stdout)]
pub fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    if args.print_example {
        crate::status::emit(&packaged_config()?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let dir = &args.dir;
    let secret = if args.key_only {
        let secret = create_key_pair(dir, args.force)?;
        println!(
            "Wrote {} (secret, mode 0600) and {}",
            dir.join(NODE_KEY_FILE).display(),
            dir.join(NODE_PUB_FILE).display(),
        );
        secret
    } else {
        let secret = create_node_key(dir, args.force)?;
        println!(
            "Wrote {} (secret, mode 0600), {} and {}",
            dir.join(NODE_KEY_FILE).display(),
            dir.join(NODE_PUB_FILE).display(),
            dir.join(CONFIG_FILE).display()
        );
        secret
    };
    let id = secret.node_id();
    println!("Node id:      {id}");
    println!("Overlay IPv6: {}", id.overlay_ipv6());
    println!();
    println!("Next steps:");
    println!(
        "  1. Have the network CA sign this node's public key (no CA yet? `weft ca init --dir ca`):"
    );
    println!(
        "       weft ca sign --ca-key ca/ca.key --public-key {} --name NAME [--ipv4 198.19.0.1/16] --out {}",
        dir.join(NODE_PUB_FILE).display(),
        dir.join("node.crt").display()
    );
    println!("  2. Put node.crt and the CA's ca.crt next to weft.toml.");
    println!(
        "  3. Add [[peers]] to {} and start the node:",
        dir.join(CONFIG_FILE).display()
    );
    println!(
        "       weft up --config {}",
        dir.join(CONFIG_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `weft ca ...`.
#[allow(clippy::print_stdout)]
pub fn ca(command: &CaCommand) -> anyhow::Result<ExitCode> {
    match command {
        CaCommand::Init {
            dir,
            name,
            days,
            force,
        } => {
            let ca = create_ca(dir, name, *days, *force)?;
            println!(
                "Wrote {} (secret, mode 0600) and {}",
                dir.join(CA_KEY_FILE).display(),
                dir.join(CA_CERT_FILE).display()
            );
            println!(
                "CA '{}', fingerprint {}",
                ca.certificate().name(),
                hex(&ca.certificate().fingerprint())
            );
            println!(
                "Copy {} to every node; keep {} secret.",
                CA_CERT_FILE, CA_KEY_FILE
            );
            println!(
                "Sign a node: weft ca sign --ca-key {} --public-key node.pub --name NAME --out node.crt",
                dir.join(CA_KEY_FILE).display()
            );
        }
        CaCommand::Sign {
            ca_key,
            public_key,
            name,
            ipv4,
            groups,
            days,
            out,
            force,
            force_claim,
        } => {
            let ipv4 = match ipv4 {
                Some(text) => Some(
                    text.parse::<Ipv4Net>()
                        .map_err(|e| anyhow::anyhow!("--ipv4: {e}"))?,
                ),
                None => None,
            };
            let request = SignRequest {
                ca_key: ca_key.clone(),
                public_key: public_key.clone(),
                name: name.clone(),
                ipv4,
                groups: groups.clone(),
                days: *days,
                out: out.clone(),
                force: *force,
                force_claim: *force_claim,
            };
            let certificate = sign(&request)?;
            println!(
                "Wrote {}: '{}', node id {}, overlay IPv6 {}{}",
                out.display(),
                certificate.name(),
                certificate.node_id().short(),
                certificate.node_id().overlay_ipv6(),
                certificate
                    .ipv4()
                    .map(|n| format!(", IPv4 {n}"))
                    .unwrap_or_default()
            );
        }
        CaCommand::Revoke {
            ca_key,
            node_ids,
            certificates,
            names,
            list,
            out,
            force,
        } => {
            let list = revoke(&RevokeRequest {
                ca_key: ca_key.clone(),
                node_ids: node_ids.clone(),
                certificates: certificates.clone(),
                names: names.clone(),
                list: list.clone(),
                out: out.clone(),
                force: *force,
            })?;
            println!(
                "Wrote {}: revocation list version {}, {} node ids, {} certificates, {} names",
                out.display(),
                list.version(),
                list.node_ids().len(),
                list.certificates().len(),
                list.names().len()
            );
            println!(
                "Give it to any node ([pki] revocations = \"{}\", or copy it over the file a node already names, then weft reload); the nodes pass it on.",
                out.display()
            );
        }
        CaCommand::Renew {
            ca_key,
            certificate,
            days,
            out,
            force,
        } => {
            let renewed = renew(ca_key, certificate, *days, out, *force)?;
            println!(
                "Wrote {}: '{}', node id {}, valid until {}",
                out.display(),
                renewed.name(),
                renewed.node_id().short(),
                crate::cert::utc(renewed.not_after())
            );
            println!(
                "Put it where the node's node.certificate points and run weft reload there (or send the daemon SIGHUP): the node adopts it without dropping a session."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Re-signs the certificate in `certificate` with the CA in `ca_key`: same
/// key, name, overlay IPv4 and groups, valid from now for `days`; writes it
/// to `out`. Refuses a certificate this CA did not sign (renewing it here
/// would move the node to another network without anyone asking).
pub fn renew(
    ca_key: &Path,
    certificate: &Path,
    days: u64,
    out: &Path,
    force: bool,
) -> anyhow::Result<Certificate> {
    refuse_existing(&[out.to_owned()], force)?;
    let ca = read_ca_secret(ca_key)?;
    let text = std::fs::read_to_string(certificate)
        .with_context(|| format!("cannot read certificate {}", certificate.display()))?;
    let old = Certificate::from_pem(&text)
        .with_context(|| format!("{} is not a weft node certificate", certificate.display()))?;
    old.verify_issuer(ca.certificate()).with_context(|| {
        format!(
            "{} was not signed by the CA in {}",
            certificate.display(),
            ca_key.display()
        )
    })?;
    let renewed = issue(
        &ca,
        old.public_key(),
        old.name(),
        old.ipv4(),
        old.groups(),
        days,
    )?;
    write_file(out, renewed.to_pem().as_bytes(), Secret::No, force)?;
    // The same key keeps its name and address: recorded, never refused.
    ledger::record(&ledger::path_for(ca_key), &renewed)?;
    Ok(renewed)
}

/// Writes the next version of a revocation list: the one `request.list`
/// (or `request.out`, if it exists) holds, signed by the same CA, plus the
/// entries of `request`.
pub fn revoke(request: &RevokeRequest) -> anyhow::Result<RevocationList> {
    if request.node_ids.is_empty() && request.certificates.is_empty() && request.names.is_empty() {
        bail!("say what to revoke: --node-id ID, --certificate FILE or --name NAME");
    }
    let ca = read_ca_secret(&request.ca_key)?;
    let base_path = request
        .list
        .clone()
        .or_else(|| request.out.exists().then(|| request.out.clone()));
    let replaces_base = base_path.as_ref().is_some_and(|b| *b == request.out);
    if !replaces_base {
        refuse_existing(std::slice::from_ref(&request.out), request.force)?;
    }
    let base = match &base_path {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read revocation list {}", path.display()))?;
            let list = RevocationList::from_pem(&text)
                .with_context(|| format!("{} is not a weft revocation list", path.display()))?;
            list.verify(ca.certificate()).with_context(|| {
                format!(
                    "{} was not signed by the CA in {}",
                    path.display(),
                    request.ca_key.display()
                )
            })?;
            Some(list)
        }
    };
    let mut template = RevocationTemplate {
        version: base.as_ref().map_or(0, RevocationList::version) + 1,
        issued_at: unix_now()?,
        ..RevocationTemplate::default()
    };
    if let Some(base) = &base {
        template.node_ids = base.node_ids();
        template.certificates = base.certificates().to_vec();
        template.names = base.names().to_vec();
    }
    for text in &request.node_ids {
        let bytes = config::parse_fingerprint(text)
            .with_context(|| format!("--node-id {text}: not a node id (64 hex digits)"))?;
        template.node_ids.push(NodeId::from_bytes(bytes));
    }
    for path in &request.certificates {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read certificate {}", path.display()))?;
        let certificate = Certificate::from_pem(&text)
            .with_context(|| format!("{} is not a weft node certificate", path.display()))?;
        certificate
            .verify_issuer(ca.certificate())
            .with_context(|| {
                format!(
                    "{} was not signed by the CA in {}",
                    path.display(),
                    request.ca_key.display()
                )
            })?;
        template.certificates.push(certificate.fingerprint());
    }
    for name in &request.names {
        if !crate::config::is_certificate_label(name) {
            bail!("--name {name}: not a certificate name (a-z, 0-9 and '-', at most 63)");
        }
        template.names.push(name.clone());
    }
    let list = RevocationList::sign(&ca, &template)
        .map_err(|e| anyhow::anyhow!("cannot sign the revocation list: {e}"))?;
    write_file(
        &request.out,
        list.to_pem().as_bytes(),
        Secret::No,
        replaces_base || request.force,
    )?;
    Ok(list)
}

fn read_ca_secret(ca_key: &Path) -> anyhow::Result<CaSecret> {
    let text = std::fs::read_to_string(ca_key)
        .with_context(|| format!("cannot read CA key {}", ca_key.display()))?;
    // The PEM error alone: the core's wraps it as "certificate text", which
    // misleads when what is missing is the key block.
    CaSecret::from_pem(&text)
        .map_err(|error| match error {
            CertError::Pem(pem) => anyhow::Error::new(pem),
            other => anyhow::Error::new(other),
        })
        .with_context(|| {
            format!(
                "{} is not a weft CA key (written by `weft ca init`)",
                ca_key.display()
            )
        })
}

/// Creates a node key pair in `dir`: `node.key` (mode 0600), `node.pub` and a
/// commented `weft.toml`. Refuses to replace any of them unless `force`.
pub fn create_node_key(dir: &Path, force: bool) -> anyhow::Result<SecretKey> {
    let files = [NODE_KEY_FILE, NODE_PUB_FILE, CONFIG_FILE].map(|f| dir.join(f));
    refuse_existing(&files, force)?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let secret = new_secret_key()?;
    let [key, public, config_file] = files;
    write_file(&key, secret.to_pem().as_bytes(), Secret::Yes, force)?;
    write_file(
        &public,
        secret.public().to_pem().as_bytes(),
        Secret::No,
        force,
    )?;
    write_file(
        &config_file,
        config::example_config(&secret.public()).as_bytes(),
        Secret::No,
        force,
    )?;
    Ok(secret)
}

/// Creates only the key pair in `dir`: `node.key` (mode 0600) and
/// `node.pub`. Refuses to replace either unless `force`.
pub fn create_key_pair(dir: &Path, force: bool) -> anyhow::Result<SecretKey> {
    let files = [NODE_KEY_FILE, NODE_PUB_FILE].map(|f| dir.join(f));
    refuse_existing(&files, force)?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let secret = new_secret_key()?;
    let [key, public] = files;
    write_file(&key, secret.to_pem().as_bytes(), Secret::Yes, force)?;
    write_file(
        &public,
        secret.public().to_pem().as_bytes(),
        Secret::No,
        force,
    )?;
    Ok(secret)
}

/// The commented config of [`config::example_config`] for no node in
/// particular: the lines about one node's id and key give way to where the
/// keys are and what to do next. The Debian package installs it as
/// `/etc/weft/weft.toml`.
pub fn packaged_config() -> anyhow::Result<String> {
    const HEADER: &str = "\
# weft node config. Paths are relative to this file's directory; every
# `weft` command reads this file unless --config or WEFT_CONFIG names another.
#
# This node's keys are node.key (secret, mode 0600) and node.pub beside this
# file; the Debian package writes them when it is installed (`weft init
# --dir /etc/weft --key-only` writes new ones). To join a network:
#   1. have the network's CA sign node.pub:
#        weft ca sign --ca-key ca.key --public-key node.pub --name NAME --out node.crt
#   2. put node.crt and the CA's ca.crt beside this file;
#   3. name peers ([[peers]]) or a bootstrap endpoint ([dht]) below;
#   4. check and start: weft up --check-config && systemctl enable --now weft
";
    // Any key will do: only the header, replaced here, depends on it.
    let example = config::example_config(&new_secret_key()?.public());
    let body = example
        .find("\n[node]\n")
        .map(|at| &example[at..])
        .context("the example config has no [node] table")?;
    Ok(format!("{HEADER}{body}"))
}

/// Creates a network CA in `dir`: `ca.key` (mode 0600, the signing key and
/// the CA certificate) and `ca.crt`, valid from now for `days`.
pub fn create_ca(dir: &Path, name: &str, days: u64, force: bool) -> anyhow::Result<CaSecret> {
    let files = [CA_KEY_FILE, CA_CERT_FILE].map(|f| dir.join(f));
    refuse_existing(&files, force)?;
    let ca = new_ca(name, days)?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let [key, cert] = files;
    write_file(&key, ca.to_pem().as_bytes(), Secret::Yes, force)?;
    // A new CA has signed nothing: an old CA's ledger would block names
    // its certificates no longer hold.
    let ledger = ledger::path_for(&key);
    match std::fs::remove_file(&ledger) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", ledger.display())),
    }
    write_file(
        &cert,
        ca.certificate().to_pem().as_bytes(),
        Secret::No,
        force,
    )?;
    Ok(ca)
}

/// Signs the public key in `request.public_key` with the CA in
/// `request.ca_key` and writes the certificate to `request.out`.
pub fn sign(request: &SignRequest) -> anyhow::Result<Certificate> {
    refuse_existing(std::slice::from_ref(&request.out), request.force)?;
    let ca = read_ca_secret(&request.ca_key)?;
    let public_text = std::fs::read_to_string(&request.public_key)
        .with_context(|| format!("cannot read public key {}", request.public_key.display()))?;
    let public_key = PublicKey::from_pem(&public_text).with_context(|| {
        format!(
            "{} is not a weft public key (node.pub from `weft init`)",
            request.public_key.display()
        )
    })?;
    let ledger = ledger::path_for(&request.ca_key);
    ledger::check(
        &ledger,
        &public_key.node_id(),
        &request.name,
        request.ipv4,
        unix_now()?,
        request.force_claim,
    )?;
    let certificate = issue(
        &ca,
        public_key,
        &request.name,
        request.ipv4,
        &request.groups,
        request.days,
    )?;
    write_file(
        &request.out,
        certificate.to_pem().as_bytes(),
        Secret::No,
        request.force,
    )?;
    ledger::record(&ledger, &certificate)?;
    Ok(certificate)
}

/// Issues a certificate for `public_key`, valid from now for `days` (never
/// beyond the CA's own end).
pub fn issue(
    ca: &CaSecret,
    public_key: PublicKey,
    name: &str,
    ipv4: Option<Ipv4Net>,
    groups: &[String],
    days: u64,
) -> anyhow::Result<Certificate> {
    let (not_before, not_after) = validity(days)?;
    let not_after = not_after.min(ca.certificate().not_after());
    let template = CertificateTemplate {
        name: name.to_owned(),
        public_key,
        ipv4,
        groups: groups.to_vec(),
        not_before,
        not_after,
    };
    ca.sign(&template).map_err(|e| match e {
        CertError::Invalid {
            field: "validity", ..
        } => {
            anyhow::anyhow!(
                "cannot sign: the CA '{}' has expired",
                ca.certificate().name()
            )
        }
        other => anyhow::anyhow!("cannot sign a certificate for '{name}': {other}"),
    })
}

/// A fresh node key from the OS random source.
pub fn new_secret_key() -> anyhow::Result<SecretKey> {
    Ok(SecretKey::from_random(random_bytes()?))
}

/// A fresh CA valid from now for `days`, from the OS random source.
pub fn new_ca(name: &str, days: u64) -> anyhow::Result<CaSecret> {
    let (not_before, not_after) = validity(days)?;
    CaSecret::new(random_bytes()?, name, not_before, not_after)
        .map_err(|e| anyhow::anyhow!("cannot create the CA '{name}': {e}"))
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the operating system's random source failed"))?;
    Ok(bytes)
}

/// Seconds since the unix epoch, from the system clock.
pub fn unix_now() -> anyhow::Result<u64> {
    #[allow(clippy::disallowed_methods)] // the CLI is where wall-clock time enters
    let now = std::time::SystemTime::now();
    Ok(now
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

fn validity(days: u64) -> anyhow::Result<(u64, u64)> {
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let now = unix_now()?;
    let length = days
        .checked_mul(SECS_PER_DAY)
        .filter(|l| now.checked_add(*l).is_some());
    let Some(length) = length else {
        bail!("--days {days} is too long");
    };
    Ok((now.saturating_sub(BACKDATE_SECS), now + length))
}

fn refuse_existing(files: &[PathBuf], force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    let existing: Vec<String> = files
        .iter()
        .filter(|f| f.exists())
        .map(|f| f.display().to_string())
        .collect();
    if !existing.is_empty() {
        bail!(
            "{} already exist(s); not overwriting without --force",
            existing.join(", ")
        );
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Secret {
    Yes,
    No,
}

fn write_file(path: &Path, contents: &[u8], secret: Secret, force: bool) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    if secret == Secret::Yes {
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    if secret == Secret::Yes {
        // An existing file replaced under --force keeps its old mode:
        // narrow it before the secret goes in.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", path.display()))?;
    }
    file.write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Bytes as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weft-pki-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn node_key_is_private_and_not_overwritten() {
        let dir = temp_dir("node");
        let secret = create_node_key(&dir, false).unwrap();
        let mode = std::fs::metadata(dir.join(NODE_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let public =
            PublicKey::from_pem(&std::fs::read_to_string(dir.join(NODE_PUB_FILE)).unwrap())
                .unwrap();
        assert_eq!(public, secret.public());
        let again = create_node_key(&dir, false).unwrap_err().to_string();
        assert!(again.contains("not overwriting without --force"), "{again}");
        let replaced = create_node_key(&dir, true).unwrap();
        assert_ne!(replaced.public(), secret.public());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn issued_certificate_verifies_under_its_ca() {
        let ca = new_ca("net", 10).unwrap();
        let key = new_secret_key().unwrap();
        let ipv4 = Some("198.19.0.1/16".parse().unwrap());
        let cert = issue(&ca, key.public(), "a", ipv4, &["db".into()], 5).unwrap();
        cert.verify(ca.certificate(), unix_now().unwrap()).unwrap();
        assert_eq!(cert.ipv4(), ipv4);
        let other = new_ca("net", 10).unwrap();
        assert!(matches!(
            cert.verify(other.certificate(), unix_now().unwrap()),
            Err(CertError::WrongCa { .. })
        ));
    }

    #[test]
    fn bad_names_fail_clearly() {
        let ca = new_ca("net", 10).unwrap();
        let key = new_secret_key().unwrap();
        let error = issue(&ca, key.public(), "Bad Name", None, &[], 5)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("invalid name") && error.contains("a-z, 0-9"),
            "{error}"
        );
        let error = new_ca("My Net", 10).err().unwrap().to_string();
        assert!(
            error.contains("invalid name") && error.contains("a-z, 0-9"),
            "{error}"
        );
        assert!(new_ca("net", 0).is_err());
    }
}
