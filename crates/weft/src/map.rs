//! `weft map`: prints the URL of a running node's network map with the
//! API's token in it, to open in a browser (the page trades the token for
//! a cookie and drops it from the address bar), or the token alone for
//! scripts (`curl -H "Authorization: Bearer $(weft map -c FILE --token)"`).
//!
//! It reads the node's config for `[api] listen` and `[api] token_file`;
//! the token file is readable by root and the `weft` group only, so this
//! needs one of them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config::ApiSection;

/// Arguments of `weft map`.
#[derive(clap::Args, Debug)]
pub struct MapArgs {
    /// The node's config file (default: $WEFT_CONFIG, else
    /// /etc/weft/weft.toml).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print only the API token (for `Authorization: Bearer`).
    #[arg(long)]
    pub token: bool,
}

/// Prints the map's URL (or the token).
#[allow(clippy::print_stdout)] // a CLI command: stdout is its output
pub fn run(args: &MapArgs) -> anyhow::Result<ExitCode> {
    let config = crate::config::locate(args.config.as_deref()).load()?;
    if !config.api.enabled {
        bail!(
            "{}: the HTTP API is off ([api] enabled = false)",
            config.file.display()
        );
    }
    let token = crate::daemon::read_token(&config.api.token_file).with_context(|| {
        format!(
            "is the node up (it makes the token at start), and are you root or in group {}?",
            crate::config::DEFAULT_DAEMON_USER
        )
    })?;
    if args.token {
        println!("{}", token.as_str());
    } else {
        println!("{}", map_url(&config.api, token.as_str()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The map's URL on `[api] listen` (loopback when it listens on every
/// address) with `token`.
pub fn map_url(api: &ApiSection, token: &str) -> String {
    let address = match api.listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, api.listen.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, api.listen.port()))
        }
        _ => api.listen,
    };
    format!("http://{address}/?token={token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_the_listening_address_or_loopback_and_the_token() {
        let mut api = ApiSection::default();
        assert_eq!(map_url(&api, "abc"), "http://127.0.0.1:4880/?token=abc");
        api.listen = "[::]:9000".parse().unwrap();
        assert_eq!(map_url(&api, "abc"), "http://[::1]:9000/?token=abc");
        api.listen = "0.0.0.0:80".parse().unwrap();
        assert_eq!(map_url(&api, "x"), "http://127.0.0.1:80/?token=x");
    }
}
