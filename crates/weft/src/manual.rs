//! `weft man` and `weft completions`: the manual pages and shell
//! completions, generated from the command's clap definition so they never
//! drift from what the binary accepts.
//!
//! [`man_pages`] gives `weft.1` (with FILES, ENVIRONMENT and EXIT STATUS
//! sections written here) and one page per subcommand (`weft-status.1`,
//! `weft-ca-sign.1`, ...), as clap_mangen renders them. The Debian package
//! ships both, built by `scripts/build-deb` with the binary it packages.

use std::io::{self, Write};
use std::path::Path;

use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

/// Every manual page of `command` (the whole `weft` command): file name and
/// roff text, `weft.1` first.
pub fn man_pages(command: clap::Command) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let mut pages = vec![main_page(&command)?];
    subcommand_pages(&command, &mut pages)?;
    Ok(pages)
}

/// Writes every page of [`man_pages`] into `dir` (created if missing);
/// returns the files written.
pub fn write_man_pages(command: clap::Command, dir: &Path) -> io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut names = Vec::new();
    for (name, text) in man_pages(command)? {
        std::fs::write(dir.join(&name), text)?;
        names.push(name);
    }
    Ok(names)
}

/// Writes the completion script of `shell` for `command` to `out`.
pub fn completions(shell: clap_complete::Shell, mut command: clap::Command, out: &mut dyn Write) {
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, &mut command, name, out);
}

/// `weft.1`: clap_mangen's sections, then what an operator looks for in a
/// daemon's page and clap cannot know.
fn main_page(command: &clap::Command) -> io::Result<(String, Vec<u8>)> {
    let man = Man::new(command.clone());
    let mut text = Vec::new();
    man.render_title(&mut text)?;
    man.render_name_section(&mut text)?;
    man.render_synopsis_section(&mut text)?;
    man.render_description_section(&mut text)?;
    man.render_options_section(&mut text)?;
    man.render_subcommands_section(&mut text)?;
    extra_sections().to_writer(&mut text)?;
    man.render_version_section(&mut text)?;
    Ok((man.get_filename(), text))
}

fn subcommand_pages(command: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> io::Result<()> {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = Man::new(sub.clone());
        let mut text = Vec::new();
        man.render(&mut text)?;
        pages.push((man.get_filename(), text));
        subcommand_pages(sub, pages)?;
    }
    Ok(())
}

/// Arguments of a roff request that takes none.
const NO_ARGS: [&str; 0] = [];

fn extra_sections() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["FILES"]);
    for (file, what) in [
        (
            "/etc/weft/weft.toml",
            "The node's config file, used by every command unless --config or WEFT_CONFIG names another. `weft init --dir /etc/weft` writes a commented one with the node's keys.",
        ),
        (
            "/etc/weft/node.key",
            "The node's secret key. weft up refuses to start if other users may read it (chmod 600).",
        ),
        (
            "/etc/weft/node.crt, /etc/weft/ca.crt",
            "The node's certificate and the network CA's, from weft ca sign.",
        ),
        (
            "/run/weft/weft0.sock",
            "The control socket that status, routes, trace, lookup, group, qos and reload talk to ([control] socket).",
        ),
        (
            "/usr/lib/systemd/system/weft.service",
            "The systemd unit of the Debian package: the daemon runs as the user weft with CAP_NET_ADMIN only; systemctl reload weft sends it SIGHUP, which re-reads the config as weft reload does.",
        ),
    ] {
        roff.control("TP", NO_ARGS);
        roff.text([bold(file)]);
        roff.text([roman(what)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, what) in [
        (
            "WEFT_CONFIG",
            "The config file to use when --config is not given (default /etc/weft/weft.toml).",
        ),
        (
            "RUST_LOG",
            "A log filter that replaces [log] level for weft up: a level (error, warn, info, debug, trace, off) or TARGET=LEVEL, comma-separated.",
        ),
        (
            "WEFT_API_FD",
            "For supervisors: serve the HTTP API on this inherited, listening TCP socket instead of [api] listen.",
        ),
    ] {
        roff.control("TP", NO_ARGS);
        roff.text([bold(name)]);
        roff.text([roman(what)]);
    }
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(
        "0 on success; 1 on an error, which is printed with its cause (config errors name the file, line and key); weft demo: 2 when not run as root, 130 when interrupted.",
    )]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        italic("weft-up"),
        roman("(1), "),
        italic("weft-status"),
        roman("(1), "),
        italic("weft-ca"),
        roman("(1), "),
        italic("systemctl"),
        roman("(1); the README and docs/ of the weft sources."),
    ]);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> clap::Command {
        clap::Command::new("weft")
            .version("1.2.3")
            .about("an overlay")
            .subcommand(
                clap::Command::new("ca")
                    .about("the CA")
                    .subcommand(clap::Command::new("sign").about("sign")),
            )
            .subcommand(clap::Command::new("status").about("show the node"))
    }

    #[test]
    fn every_subcommand_gets_a_page_named_after_its_path() {
        let names: Vec<String> = man_pages(command())
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            names,
            ["weft.1", "weft-ca.1", "weft-ca-sign.1", "weft-status.1"]
        );
    }

    #[test]
    fn the_main_page_has_the_files_and_environment() {
        let pages = man_pages(command()).unwrap();
        let text = String::from_utf8_lossy(&pages[0].1);
        for section in ["FILES", "ENVIRONMENT", "EXIT STATUS", "SEE ALSO", "VERSION"] {
            assert!(
                text.contains(&format!(".SH \"{section}\""))
                    || text.contains(&format!(".SH {section}")),
                "{section}: {text}"
            );
        }
        assert!(text.contains("WEFT_CONFIG"), "{text}");
    }
}
