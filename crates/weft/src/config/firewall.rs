//! The `[firewall]` section of the config file: rules for traffic from and
//! to peers, the default actions and the connection table, read into the
//! core's [`FirewallConfig`].
//!
//! Without a `[firewall]` table (and without `[[firewall.inbound]]` or
//! `[[firewall.outbound]]`, which create it) the firewall is off: every
//! packet passes, as before the firewall existed. With one, it is on unless
//! `enabled = false`, and inbound traffic no rule allows is dropped.
//!
//! Every value is read with its position, so a mistake names the line,
//! the column and the dotted key (`firewall.inbound[2].port`). Fields that
//! take a list also take a single value (`port = 5432`, `group = "app"`,
//! as Nebula writes them). A rule naming a CA is checked against the CA
//! file when the node starts ([`FirewallSection::check_with_ca`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use weft_core::CaCertificate;
use weft_core::firewall::{
    Action, ConntrackConfig, Firewall, FirewallConfig, FirewallConfigError, IcmpType,
    MAX_CONNTRACK_ENTRIES, MAX_RULES, PortMatch, Protocol, Rule,
};
use weft_core::mcast::parse_prefix;
use weft_core::qos::PortRange;

use super::{ConfigError, Source, parse_duration};

/// `[firewall]`, checked: the core's settings, and where each rule was
/// written (for errors found once the CA file is read).
#[derive(Debug, Clone, Default)]
pub struct FirewallSection {
    /// The core's settings (off when the file has no `[firewall]`).
    pub config: FirewallConfig,
    /// Rule label (its name or `inbound[2]`) -> (line, column, key).
    locations: BTreeMap<String, (usize, usize, String)>,
}

impl FirewallSection {
    /// Compiles the rules against the CA the node trusts (rules may name
    /// it), so that a mistake points at the rule.
    pub(super) fn check_with_ca(
        &self,
        file: &std::path::Path,
        ca: &CaCertificate,
    ) -> Result<(), ConfigError> {
        let Err(error) = Firewall::new(&self.config, ca) else {
            return Ok(());
        };
        let (line, column, key) = match &error {
            FirewallConfigError::Rule { rule, .. } => self
                .locations
                .get(rule)
                .cloned()
                .unwrap_or((1, 1, "firewall".to_owned())),
            FirewallConfigError::TooManyRules { .. }
            | FirewallConfigError::TableSize(_)
            | FirewallConfigError::ZeroTimeout(_) => (1, 1, "firewall".to_owned()),
        };
        Err(ConfigError::Invalid {
            file: file.to_owned(),
            line,
            column,
            key,
            message: error.to_string(),
        })
    }
}

/// `[firewall]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFirewall {
    enabled: Option<bool>,
    inbound_default: Option<Spanned<String>>,
    outbound_default: Option<Spanned<String>>,
    conntrack_max: Option<Spanned<i64>>,
    tcp_timeout: Option<Spanned<String>>,
    udp_timeout: Option<Spanned<String>>,
    icmp_timeout: Option<Spanned<String>>,
    unreplied_timeout: Option<Spanned<String>>,
    #[serde(default)]
    inbound: Vec<Spanned<RawRule>>,
    #[serde(default)]
    outbound: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    action: Option<Spanned<String>>,
    proto: Option<Spanned<toml::Value>>,
    port: Option<Spanned<toml::Value>>,
    icmp_type: Option<Spanned<toml::Value>>,
    host: Option<Spanned<toml::Value>>,
    group: Option<Spanned<toml::Value>>,
    groups: Option<Spanned<toml::Value>>,
    cidr: Option<Spanned<toml::Value>>,
    local_cidr: Option<Spanned<toml::Value>>,
    ca: Option<Spanned<toml::Value>>,
}

impl RawFirewall {
    /// Checks the section (`None`: the file has none, and the firewall is
    /// off).
    pub(super) fn check(
        raw: Option<&Self>,
        source: &Source<'_>,
    ) -> Result<FirewallSection, ConfigError> {
        let Some(raw) = raw else {
            return Ok(FirewallSection::default());
        };
        let mut config = FirewallConfig {
            enabled: raw.enabled.unwrap_or(true),
            ..FirewallConfig::default()
        };
        for (value, key, target) in [
            (
                &raw.inbound_default,
                "firewall.inbound_default",
                &mut config.inbound_default,
            ),
            (
                &raw.outbound_default,
                "firewall.outbound_default",
                &mut config.outbound_default,
            ),
        ] {
            if let Some(value) = value {
                *target = Action::parse(value.get_ref())
                    .ok_or_else(|| source.error(&value.span(), key, bad_action(value.get_ref())))?;
            }
        }
        config.conntrack = raw.conntrack(source)?;
        let mut locations = BTreeMap::new();
        for (direction, list, rules) in [
            ("inbound", &raw.inbound, &mut config.inbound),
            ("outbound", &raw.outbound, &mut config.outbound),
        ] {
            if list.len() > MAX_RULES {
                return Err(source.error(
                    &list[MAX_RULES].span(),
                    format!("firewall.{direction}[{MAX_RULES}]"),
                    format!("{} rules; at most {MAX_RULES} are allowed", list.len()),
                ));
            }
            for (i, entry) in list.iter().enumerate() {
                let key = format!("firewall.{direction}[{i}]");
                let rule = entry.get_ref().check(source, &key)?;
                let label = rule
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{direction}[{i}]"));
                if let Some(name) = &rule.name
                    && locations.contains_key(name)
                {
                    let span = entry
                        .get_ref()
                        .name
                        .as_ref()
                        .map_or(entry.span(), Spanned::span);
                    return Err(source.error(
                        &span,
                        format!("{key}.name"),
                        format!("another rule is already named '{name}'"),
                    ));
                }
                let (line, column) = source.line_column(entry.span().start);
                locations.insert(label, (line, column, key));
                rules.push(rule);
            }
        }
        Ok(FirewallSection { config, locations })
    }

    fn conntrack(&self, source: &Source<'_>) -> Result<ConntrackConfig, ConfigError> {
        let mut table = ConntrackConfig::default();
        if let Some(max) = &self.conntrack_max {
            table.max_entries = usize::try_from(*max.get_ref())
                .ok()
                .filter(|m| (1..=MAX_CONNTRACK_ENTRIES).contains(m))
                .ok_or_else(|| {
                    source.error(
                        &max.span(),
                        "firewall.conntrack_max",
                        format!(
                            "{} is out of range 1..={MAX_CONNTRACK_ENTRIES}",
                            max.get_ref()
                        ),
                    )
                })?;
        }
        for (value, key, target) in [
            (
                &self.tcp_timeout,
                "firewall.tcp_timeout",
                &mut table.tcp_timeout,
            ),
            (
                &self.udp_timeout,
                "firewall.udp_timeout",
                &mut table.udp_timeout,
            ),
            (
                &self.icmp_timeout,
                "firewall.icmp_timeout",
                &mut table.icmp_timeout,
            ),
            (
                &self.unreplied_timeout,
                "firewall.unreplied_timeout",
                &mut table.unreplied_timeout,
            ),
        ] {
            let Some(value) = value else {
                continue;
            };
            let parsed =
                parse_duration(value.get_ref()).map_err(|m| source.error(&value.span(), key, m))?;
            if parsed.is_zero() || parsed > Duration::from_secs(7 * 86_400) {
                return Err(source.error(
                    &value.span(),
                    key,
                    format!(
                        "'{}' is out of range (above 0, at most 7 days)",
                        value.get_ref()
                    ),
                ));
            }
            *target = parsed;
        }
        Ok(table)
    }
}

impl RawRule {
    fn check(&self, source: &Source<'_>, key: &str) -> Result<Rule, ConfigError> {
        let field = |name: &str| format!("{key}.{name}");
        let mut rule = Rule::default();
        if let Some(name) = &self.name {
            let text = name.get_ref().trim();
            if text.is_empty() || text.len() > 64 || text.chars().any(char::is_control) {
                return Err(source.error(
                    &name.span(),
                    field("name"),
                    "a rule name is 1 to 64 printable characters",
                ));
            }
            rule.name = Some(text.to_owned());
        }
        if let Some(action) = &self.action {
            rule.action = Action::parse(action.get_ref()).ok_or_else(|| {
                source.error(
                    &action.span(),
                    field("action"),
                    bad_action(action.get_ref()),
                )
            })?;
        }
        if let Some(proto) = &self.proto {
            let text = scalar_text(proto.get_ref()).unwrap_or_default();
            rule.protocol = if text.trim().eq_ignore_ascii_case("any") {
                None
            } else {
                Some(Protocol::parse(&text).ok_or_else(|| {
                    source.error(
                        &proto.span(),
                        field("proto"),
                        format!(
                            "'{text}' is not a protocol (any, tcp, udp, icmp or a number 0 to 255)"
                        ),
                    )
                })?)
            };
        }
        let any = |text: &str| text.trim().eq_ignore_ascii_case("any");
        for text in list(source, &self.port, &field("port"))? {
            let (span, text) = text;
            if any(&text) {
                continue;
            }
            let port = if text.trim().eq_ignore_ascii_case("fragment") {
                PortMatch::Fragment
            } else {
                PortMatch::Range(PortRange::parse(&text).ok_or_else(|| {
                    source.error(
                        &span,
                        field("port"),
                        format!("'{text}' is not a port, a range such as \"8000-8100\", \"any\" or \"fragment\""),
                    )
                })?)
            };
            rule.ports.push(port);
        }
        for (span, text) in list(source, &self.icmp_type, &field("icmp_type"))? {
            rule.icmp_types.push(IcmpType::parse(&text).ok_or_else(|| {
                source.error(
                    &span,
                    field("icmp_type"),
                    format!(
                        "'{text}' is not an ICMP type (echo-request, echo-reply, unreachable, time-exceeded, packet-too-big, parameter-problem or a number)"
                    ),
                )
            })?);
        }
        for (span, text) in list(source, &self.host, &field("host"))? {
            if any(&text) {
                continue;
            }
            rule.hosts
                .push(label(source, &span, &field("host"), &text)?);
        }
        for (name, value) in [("group", &self.group), ("groups", &self.groups)] {
            for (span, text) in list(source, value, &field(name))? {
                rule.groups.push(label(source, &span, &field(name), &text)?);
            }
        }
        for (name, value, target) in [
            ("cidr", &self.cidr, &mut rule.cidrs),
            ("local_cidr", &self.local_cidr, &mut rule.local_cidrs),
        ] {
            for (span, text) in list(source, value, &field(name))? {
                if any(&text) {
                    continue;
                }
                target.push(parse_prefix(&text).ok_or_else(|| {
                    source.error(
                        &span,
                        field(name),
                        format!("'{text}' is not an address range such as \"198.19.1.0/24\" or \"fd77:6566::/32\""),
                    )
                })?);
            }
        }
        for (span, text) in list(source, &self.ca, &field("ca"))? {
            if any(&text) {
                continue;
            }
            if text.trim().is_empty() {
                return Err(source.error(&span, field("ca"), "empty CA name"));
            }
            rule.cas.push(text.trim().to_owned());
        }
        self.check_consistency(source, key, &rule)?;
        Ok(rule)
    }

    /// Conditions that can never hold together, reported at the field that
    /// does not fit.
    fn check_consistency(
        &self,
        source: &Source<'_>,
        key: &str,
        rule: &Rule,
    ) -> Result<(), ConfigError> {
        if let (Some(Protocol::Icmp), Some(port)) = (rule.protocol, &self.port)
            && !rule.ports.is_empty()
        {
            return Err(source.error(
                &port.span(),
                format!("{key}.port"),
                "ICMP has no ports; leave port out (or use icmp_type)",
            ));
        }
        if let Some(types) = &self.icmp_type
            && rule.protocol != Some(Protocol::Icmp)
        {
            return Err(source.error(
                &types.span(),
                format!("{key}.icmp_type"),
                "icmp_type needs proto = \"icmp\"",
            ));
        }
        Ok(())
    }
}

/// The entries of a field written as one value or a list of them, each
/// with its span (the field's span when it is a single value).
fn list(
    source: &Source<'_>,
    value: &Option<Spanned<toml::Value>>,
    key: &str,
) -> Result<Vec<(std::ops::Range<usize>, String)>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let span = value.span();
    let items: Vec<&toml::Value> = match value.get_ref() {
        toml::Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    items
        .into_iter()
        .map(|item| {
            scalar_text(item)
                .map(|text| (span.clone(), text))
                .ok_or_else(|| {
                    source.error(&span, key, "expected a string, a number or a list of them")
                })
        })
        .collect()
}

fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A certificate name or group: a DNS label, as the CA signs them.
fn label(
    source: &Source<'_>,
    span: &std::ops::Range<usize>,
    key: &str,
    text: &str,
) -> Result<String, ConfigError> {
    let text = text.trim();
    if super::is_dns_label(text) {
        Ok(text.to_owned())
    } else {
        Err(source.error(
            span,
            key,
            format!("'{text}' is not a certificate name or group (a-z, 0-9 and '-', at most 63)"),
        ))
    }
}

fn bad_action(text: &str) -> String {
    format!("'{text}' is not an action (allow, drop or reject)")
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;

    use weft_core::CaSecret;
    use weft_core::firewall::{IcmpType, PortMatch, Protocol};
    use weft_core::qos::PortRange;

    use super::*;
    use crate::config::Config;

    const MINIMAL: &str =
        "[node]\nkey = \"node.key\"\ncertificate = \"node.crt\"\nca = \"ca.crt\"\n";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(
            Path::new("/etc/weft/weft.toml"),
            &format!("{MINIMAL}{extra}"),
        )
    }

    fn error(extra: &str) -> String {
        parse(extra).unwrap_err().to_string()
    }

    #[test]
    fn without_a_section_the_firewall_is_off() {
        let config = parse("").unwrap();
        assert_eq!(config.firewall.config, FirewallConfig::default());
        assert!(!config.firewall.config.enabled);
    }

    #[test]
    fn a_rule_list_alone_turns_the_firewall_on_with_the_defaults() {
        let config = parse("[[firewall.inbound]]\nproto = \"icmp\"\n").unwrap();
        let firewall = &config.firewall.config;
        assert!(firewall.enabled);
        assert_eq!(firewall.inbound_default, Action::Drop);
        assert_eq!(firewall.outbound_default, Action::Allow);
        assert_eq!(firewall.conntrack, ConntrackConfig::default());
        assert_eq!(firewall.inbound[0].protocol, Some(Protocol::Icmp));
    }

    #[test]
    fn rules_take_single_values_and_lists() {
        let config = parse(
            "[firewall]\ninbound_default = \"reject\"\nconntrack_max = 100\ntcp_timeout = \"2h\"\n\
             [[firewall.inbound]]\nname = \"db\"\nproto = \"tcp\"\nport = 5432\ngroup = \"app\"\ngroups = [\"prod\"]\n\
             [[firewall.inbound]]\nproto = \"udp\"\nport = [53, \"6000-6100\", \"fragment\"]\nhost = [\"a\", \"b\"]\n\
             cidr = \"198.19.1.0/24\"\nlocal_cidr = [\"239.1.0.0/16\", \"ff05::/16\"]\n\
             [[firewall.inbound]]\nproto = \"icmp\"\nicmp_type = [\"echo-request\", 13]\nca = \"weft\"\naction = \"drop\"\n\
             [[firewall.outbound]]\nproto = \"any\"\nport = \"any\"\nhost = \"any\"\n",
        )
        .unwrap();
        let firewall = &config.firewall.config;
        assert_eq!(firewall.inbound_default, Action::Reject);
        assert_eq!(firewall.conntrack.max_entries, 100);
        assert_eq!(firewall.conntrack.tcp_timeout, Duration::from_secs(7200));
        let db = &firewall.inbound[0];
        assert_eq!(db.name.as_deref(), Some("db"));
        assert_eq!(db.ports, [PortMatch::Range(PortRange::single(5432))]);
        assert_eq!(db.groups, ["app", "prod"]);
        let udp = &firewall.inbound[1];
        assert_eq!(
            udp.ports,
            [
                PortMatch::Range(PortRange::single(53)),
                PortMatch::Range(PortRange {
                    start: 6000,
                    end: 6100
                }),
                PortMatch::Fragment
            ]
        );
        assert_eq!(udp.hosts, ["a", "b"]);
        assert_eq!(udp.cidrs, [(IpAddr::V4(Ipv4Addr::new(198, 19, 1, 0)), 24)]);
        assert_eq!(udp.local_cidrs.len(), 2);
        let icmp = &firewall.inbound[2];
        assert_eq!(
            icmp.icmp_types,
            [IcmpType::EchoRequest, IcmpType::Number(13)]
        );
        assert_eq!(icmp.action, Action::Drop);
        assert_eq!(icmp.cas, ["weft"]);
        assert_eq!(
            firewall.outbound[0],
            Rule::default(),
            "\"any\" is no condition"
        );
    }

    #[test]
    fn an_explicitly_disabled_firewall_keeps_its_rules_but_is_off() {
        let config =
            parse("[firewall]\nenabled = false\n[[firewall.inbound]]\nproto = \"tcp\"\n").unwrap();
        assert!(!config.firewall.config.enabled);
        assert_eq!(config.firewall.config.inbound.len(), 1);
    }

    #[test]
    fn mistakes_name_the_line_and_key() {
        for (extra, expected) in [
            (
                "[[firewall.inbound]]\nport = 70000\n",
                "weft.toml:6:8: firewall.inbound[0].port: '70000' is not a port",
            ),
            (
                "[[firewall.inbound]]\nproto = \"quic\"\n",
                "weft.toml:6:9: firewall.inbound[0].proto: 'quic' is not a protocol",
            ),
            (
                "[[firewall.inbound]]\nproto = \"icmp\"\nport = 1\n",
                "weft.toml:7:8: firewall.inbound[0].port: ICMP has no ports",
            ),
            (
                "[[firewall.outbound]]\nicmp_type = \"echo-request\"\n",
                "weft.toml:6:13: firewall.outbound[0].icmp_type: icmp_type needs proto",
            ),
            (
                "[[firewall.inbound]]\nproto = \"icmp\"\nicmp_type = \"pingg\"\n",
                "firewall.inbound[0].icmp_type: 'pingg' is not an ICMP type",
            ),
            (
                "[[firewall.inbound]]\ncidr = \"10.0.0.0/33\"\n",
                "weft.toml:6:8: firewall.inbound[0].cidr: '10.0.0.0/33' is not an address range",
            ),
            (
                "[[firewall.inbound]]\ngroup = \"App\"\n",
                "firewall.inbound[0].group: 'App' is not a certificate name or group",
            ),
            (
                "[[firewall.inbound]]\naction = \"permit\"\n",
                "firewall.inbound[0].action: 'permit' is not an action",
            ),
            (
                "[[firewall.inbound]]\nports = 22\n",
                "firewall.inbound[0].ports",
            ),
            (
                "[[firewall.inbound]]\nname = \"x\"\n[[firewall.inbound]]\nname = \"x\"\n",
                "weft.toml:8:8: firewall.inbound[1].name: another rule is already named 'x'",
            ),
            (
                "[firewall]\nconntrack_max = 0\n",
                "weft.toml:6:17: firewall.conntrack_max: 0 is out of range",
            ),
            (
                "[firewall]\nudp_timeout = \"0s\"\n",
                "firewall.udp_timeout: '0s' is out of range",
            ),
            (
                "[firewall]\noutbound_default = \"maybe\"\n",
                "firewall.outbound_default: 'maybe' is not an action",
            ),
            (
                "[[firewall.inbound]]\nport = true\n",
                "firewall.inbound[0].port: expected a string, a number or a list",
            ),
        ] {
            let message = error(extra);
            assert!(
                message.contains(expected),
                "{extra:?}:\n  got {message}\n  expected {expected}"
            );
        }
    }

    #[test]
    fn a_ca_condition_is_checked_against_the_ca_file_at_its_rule() {
        let config = parse("[[firewall.inbound]]\nproto = \"tcp\"\n[[firewall.inbound]]\nname = \"ops\"\nca = \"othernet\"\n").unwrap();
        let ca = CaSecret::new([3; 32], "weft", 0, u64::MAX / 2).unwrap();
        let message = config
            .firewall
            .check_with_ca(&config.file, ca.certificate())
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(
                "/etc/weft/weft.toml:7:1: firewall.inbound[1]: rule ops: ca 'othernet' is neither"
            ),
            "{message}"
        );
        let config = parse("[[firewall.inbound]]\nca = \"weft\"\n").unwrap();
        config
            .firewall
            .check_with_ca(&config.file, ca.certificate())
            .unwrap();
    }
}
