//! The `[qos]` section of the config file: traffic classes, classification
//! rules, the uplink rate and per-peer rates, read into the core's
//! [`QosConfig`].
//!
//! Every value is read with its position, so a mistake names the line, the
//! column and the dotted key (`qos.rules[2].dscp[1]`) with the bad value:
//! an unknown class, a rate that does not parse, a DSCP name that does not
//! exist. What only makes sense as a whole (queue limits against each
//! other, the AQM target against its interval) is checked by
//! [`QosConfig::validate`] at the end, and its message names the class,
//! rule or peer at fault.
//!
//! Defaults: without `[qos]` the node runs the core's defaults (four
//! classes, DSCP rules after RFC 4594, no shaping). Any `[[qos.classes]]`
//! entry replaces the four default classes; an entry named like a default
//! class starts from that class's settings, others from a plain normal or
//! realtime class. `default_rules = true` (the default) appends the DSCP
//! rules after the configured ones, leaving out those whose class is not
//! defined.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use weft_core::qos::{
    Aqm, ClassConfig, MAX_BURST, MAX_CLASSES, MAX_WEIGHT, MIN_BURST, MIN_QUEUE_BYTES, PathMetric,
    PortRange, Priority, QosConfig, RateLimit, Rule, default_rules, parse_bps, parse_dscp,
    parse_protocol,
};

use super::{ConfigError, Source, parse_duration};

/// `[qos]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQos {
    uplink: Option<Spanned<String>>,
    burst: Option<Spanned<String>>,
    default_class: Option<Spanned<String>>,
    default_rules: Option<bool>,
    #[serde(default)]
    classes: Vec<Spanned<RawClass>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
    #[serde(default)]
    peers: Vec<Spanned<RawPeerRate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    name: Spanned<String>,
    priority: Option<Spanned<String>>,
    weight: Option<Spanned<i64>>,
    rate: Option<Spanned<String>>,
    queue_packets: Option<Spanned<i64>>,
    queue_bytes: Option<Spanned<i64>>,
    aqm: Option<bool>,
    codel_target: Option<Spanned<String>>,
    codel_interval: Option<Spanned<String>>,
    metric: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    class: Spanned<String>,
    dscp: Option<Vec<Spanned<Scalar>>>,
    protocol: Option<Vec<Spanned<Scalar>>>,
    src_port: Option<Vec<Spanned<Scalar>>>,
    dst_port: Option<Vec<Spanned<Scalar>>>,
    src_group: Option<Vec<Spanned<String>>>,
    dst_group: Option<Vec<Spanned<String>>>,
    src_peer: Option<Vec<Spanned<String>>>,
    dst_peer: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeerRate {
    name: Spanned<String>,
    rate: Spanned<String>,
}

/// A list entry that may be written as a number or a string (`dscp =
/// ["EF", 46]`, `dst_port = [5001, "6000-6100"]`).
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
enum Scalar {
    Number(i64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Number(n) => n.to_string(),
            Scalar::Text(t) => t.clone(),
        }
    }
}

impl RawQos {
    pub(super) fn check(&self, source: &Source<'_>) -> Result<QosConfig, ConfigError> {
        let mut config = QosConfig::default();
        if let Some(uplink) = &self.uplink {
            config.uplink_bps = Some(parse_bps(uplink.get_ref()).ok_or_else(|| {
                source.error(&uplink.span(), "qos.uplink", bad_rate(uplink.get_ref()))
            })?);
        }
        if let Some(burst) = &self.burst {
            let value = parse_duration(burst.get_ref())
                .map_err(|m| source.error(&burst.span(), "qos.burst", m))?;
            if !(MIN_BURST..=MAX_BURST).contains(&value) {
                return Err(source.error(
                    &burst.span(),
                    "qos.burst",
                    format!(
                        "'{}' is out of range {MIN_BURST:?}..={MAX_BURST:?}",
                        burst.get_ref()
                    ),
                ));
            }
            config.burst = value;
        }
        if !self.classes.is_empty() {
            if self.classes.len() > MAX_CLASSES {
                return Err(source.error(
                    &self.classes[MAX_CLASSES].span(),
                    format!("qos.classes[{MAX_CLASSES}]"),
                    format!(
                        "{} classes configured; at most {MAX_CLASSES} are allowed",
                        self.classes.len()
                    ),
                ));
            }
            let mut classes: Vec<ClassConfig> = Vec::with_capacity(self.classes.len());
            for (i, entry) in self.classes.iter().enumerate() {
                let class = entry.get_ref().check(source, i, config.uplink_bps)?;
                if let Some(first) = classes.iter().position(|c| c.name == class.name) {
                    return Err(source.error(
                        &entry.get_ref().name.span(),
                        format!("qos.classes[{i}].name"),
                        format!("class '{}' is already qos.classes[{first}]", class.name),
                    ));
                }
                classes.push(class);
            }
            config.classes = classes;
        }
        let class_names: Vec<String> = config.classes.iter().map(|c| c.name.clone()).collect();
        let known = |name: &str| class_names.iter().any(|c| c == name);
        let known_list = class_names.join(", ");
        match &self.default_class {
            Some(name) => {
                let value = name.get_ref().trim();
                if !known(value) {
                    return Err(source.error(
                        &name.span(),
                        "qos.default_class",
                        format!("'{value}' is not a defined class (defined: {known_list})"),
                    ));
                }
                value.clone_into(&mut config.default_class);
            }
            None if !known(&config.default_class) => {
                // Custom classes without "interactive": the first normal
                // class takes unmatched traffic unless one is named.
                let Some(fallback) = config
                    .classes
                    .iter()
                    .find(|c| c.priority == Priority::Normal)
                    .or(config.classes.first())
                else {
                    return Err(source.error(&(0..0), "qos.classes", "no classes"));
                };
                config.default_class = fallback.name.clone();
            }
            None => {}
        }
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, entry) in self.rules.iter().enumerate() {
            rules.push(entry.get_ref().check(source, i, &known, &known_list)?);
        }
        if self.default_rules.unwrap_or(true) {
            rules.extend(default_rules().into_iter().filter(|r| known(&r.class)));
        }
        config.rules = rules;
        for (i, entry) in self.peers.iter().enumerate() {
            let peer = entry.get_ref();
            let name = peer.name.get_ref().trim();
            let key = format!("qos.peers[{i}].name");
            if name.is_empty() {
                return Err(source.error(&peer.name.span(), key, "empty peer name"));
            }
            if let Some(first) = config.peer_rates.iter().position(|(n, _)| n == name) {
                return Err(source.error(
                    &peer.name.span(),
                    key,
                    format!("peer '{name}' already has a rate in qos.peers[{first}]"),
                ));
            }
            let rate_key = format!("qos.peers[{i}].rate");
            let text = peer.rate.get_ref();
            let bps = match RateLimit::parse(text) {
                None => return Err(source.error(&peer.rate.span(), rate_key, bad_rate(text))),
                Some(limit) => limit.resolve(config.uplink_bps).ok_or_else(|| {
                    source.error(
                        &peer.rate.span(),
                        rate_key,
                        format!("'{text}' is a share of the uplink, but qos.uplink is not set"),
                    )
                })?,
            };
            config.peer_rates.push((name.to_owned(), bps));
        }
        config
            .validate()
            .map_err(|e| source.error(&(0..0), "qos", e.to_string()))?;
        Ok(config)
    }
}

impl RawClass {
    fn check(
        &self,
        source: &Source<'_>,
        index: usize,
        uplink_bps: Option<u64>,
    ) -> Result<ClassConfig, ConfigError> {
        let key = |field: &str| format!("qos.classes[{index}].{field}");
        let name = self.name.get_ref().trim();
        if !is_class_name(name) {
            return Err(source.error(
                &self.name.span(),
                key("name"),
                format!("'{name}' is not a class name (letters, digits, '-' and '_', at most 32)"),
            ));
        }
        let priority = match &self.priority {
            None => None,
            Some(value) => Some(match value.get_ref().trim() {
                "realtime" => Priority::Realtime,
                "normal" => Priority::Normal,
                other => {
                    return Err(source.error(
                        &value.span(),
                        key("priority"),
                        format!("'{other}' is not a priority (realtime or normal)"),
                    ));
                }
            }),
        };
        let named_default = QosConfig::default()
            .classes
            .into_iter()
            .find(|c| c.name == name);
        let mut class = match (named_default, priority) {
            (Some(default), None) => default,
            (Some(default), Some(p)) if default.priority == p => default,
            (_, Some(Priority::Realtime)) => ClassConfig::realtime(),
            _ => ClassConfig::normal(name, 1),
        };
        name.clone_into(&mut class.name);
        if let Some(priority) = priority {
            class.priority = priority;
        }
        if let Some(weight) = &self.weight {
            class.weight = u32::try_from(*weight.get_ref())
                .ok()
                .filter(|w| (1..=MAX_WEIGHT).contains(w))
                .ok_or_else(|| {
                    source.error(
                        &weight.span(),
                        key("weight"),
                        format!("{} is out of range 1..={MAX_WEIGHT}", weight.get_ref()),
                    )
                })?;
        }
        if let Some(rate) = &self.rate {
            let text = rate.get_ref();
            let limit = RateLimit::parse(text)
                .ok_or_else(|| source.error(&rate.span(), key("rate"), bad_rate(text)))?;
            if matches!(limit, RateLimit::UplinkPercent(_)) && uplink_bps.is_none() {
                return Err(source.error(
                    &rate.span(),
                    key("rate"),
                    format!(
                        "'{text}' is a share of the uplink, but qos.uplink is not set (give a rate such as \"5mbit\", or set qos.uplink)"
                    ),
                ));
            }
            class.rate_limit = Some(limit);
        }
        if let Some(packets) = &self.queue_packets {
            class.queue_packets = usize::try_from(*packets.get_ref())
                .ok()
                .filter(|&p| (1..=1_000_000).contains(&p))
                .ok_or_else(|| {
                    source.error(
                        &packets.span(),
                        key("queue_packets"),
                        format!("{} is out of range 1..=1000000", packets.get_ref()),
                    )
                })?;
        }
        if let Some(bytes) = &self.queue_bytes {
            class.queue_bytes = usize::try_from(*bytes.get_ref())
                .ok()
                .filter(|&b| (MIN_QUEUE_BYTES..=1 << 30).contains(&b))
                .ok_or_else(|| {
                    source.error(
                        &bytes.span(),
                        key("queue_bytes"),
                        format!(
                            "{} is out of range {MIN_QUEUE_BYTES}..={}",
                            bytes.get_ref(),
                            1u64 << 30
                        ),
                    )
                })?;
        }
        let duration = |value: &Option<Spanned<String>>,
                        field: &str|
         -> Result<Option<Duration>, ConfigError> {
            let Some(value) = value else {
                return Ok(None);
            };
            let parsed = parse_duration(value.get_ref())
                .map_err(|m| source.error(&value.span(), key(field), m))?;
            if parsed.is_zero() || parsed > Duration::from_secs(10) {
                return Err(source.error(
                    &value.span(),
                    key(field),
                    format!(
                        "'{}' is out of range (above 0, at most 10s)",
                        value.get_ref()
                    ),
                ));
            }
            Ok(Some(parsed))
        };
        let target = duration(&self.codel_target, "codel_target")?;
        let interval = duration(&self.codel_interval, "codel_interval")?;
        let aqm_wanted = self.aqm.unwrap_or(class.aqm.is_some());
        class.aqm = if aqm_wanted {
            let base = class.aqm.unwrap_or_default();
            let aqm = Aqm {
                target: target.unwrap_or(base.target),
                interval: interval.unwrap_or(base.interval),
            };
            if aqm.target > aqm.interval {
                let span = self
                    .codel_target
                    .as_ref()
                    .or(self.codel_interval.as_ref())
                    .map_or(0..0, Spanned::span);
                return Err(source.error(
                    &span,
                    key("codel_target"),
                    format!(
                        "the target ({:?}) must not be longer than the interval ({:?})",
                        aqm.target, aqm.interval
                    ),
                ));
            }
            Some(aqm)
        } else {
            if let Some(value) = self.codel_target.as_ref().or(self.codel_interval.as_ref()) {
                return Err(source.error(
                    &value.span(),
                    key("aqm"),
                    "CoDel parameters are set but aqm = false",
                ));
            }
            None
        };
        if let Some(metric) = &self.metric {
            class.metric = match metric.get_ref().trim() {
                "latency" => PathMetric::Latency,
                "loss" => PathMetric::Loss,
                other => {
                    return Err(source.error(
                        &metric.span(),
                        key("metric"),
                        format!("'{other}' is not a metric (latency or loss)"),
                    ));
                }
            };
        }
        Ok(class)
    }
}

impl RawRule {
    fn check(
        &self,
        source: &Source<'_>,
        index: usize,
        known: &dyn Fn(&str) -> bool,
        known_list: &str,
    ) -> Result<Rule, ConfigError> {
        let key = |field: &str| format!("qos.rules[{index}].{field}");
        let class = self.class.get_ref().trim();
        if !known(class) {
            return Err(source.error(
                &self.class.span(),
                key("class"),
                format!("'{class}' is not a defined class (defined: {known_list})"),
            ));
        }
        let scalars = |list: &Option<Vec<Spanned<Scalar>>>,
                       field: &str,
                       what: &str,
                       parse: &dyn Fn(&str) -> Option<u8>|
         -> Result<Vec<u8>, ConfigError> {
            let mut out = Vec::new();
            for (i, entry) in list.iter().flatten().enumerate() {
                let text = entry.get_ref().text();
                let value = parse(&text).ok_or_else(|| {
                    source.error(
                        &entry.span(),
                        format!("qos.rules[{index}].{field}[{i}]"),
                        format!("'{text}' is not {what}"),
                    )
                })?;
                if !out.contains(&value) {
                    out.push(value);
                }
            }
            Ok(out)
        };
        let dscp = scalars(
            &self.dscp,
            "dscp",
            "a DSCP (0..=63, or a name: EF, VA, LE, CS0..CS7, AF11..AF43, DF)",
            &parse_dscp,
        )?;
        let protocols = scalars(
            &self.protocol,
            "protocol",
            "an IP protocol (a number 0..=255, or tcp, udp, icmp, icmpv6, sctp, ...)",
            &parse_protocol,
        )?;
        let ports = |list: &Option<Vec<Spanned<Scalar>>>,
                     field: &str|
         -> Result<Vec<PortRange>, ConfigError> {
            let mut out = Vec::new();
            for (i, entry) in list.iter().flatten().enumerate() {
                let text = entry.get_ref().text();
                let range = PortRange::parse(&text).ok_or_else(|| {
                    source.error(
                        &entry.span(),
                        format!("qos.rules[{index}].{field}[{i}]"),
                        format!(
                            "'{text}' is not a port or port range (e.g. 5001 or \"5000-5100\")"
                        ),
                    )
                })?;
                out.push(range);
            }
            Ok(out)
        };
        let names = |list: &Option<Vec<Spanned<String>>>,
                     field: &str|
         -> Result<Vec<String>, ConfigError> {
            let mut out: Vec<String> = Vec::new();
            for (i, entry) in list.iter().flatten().enumerate() {
                let name = entry.get_ref().trim();
                if name.is_empty() {
                    return Err(source.error(
                        &entry.span(),
                        format!("qos.rules[{index}].{field}[{i}]"),
                        "empty name",
                    ));
                }
                if !out.iter().any(|n| n == name) {
                    out.push(name.to_owned());
                }
            }
            Ok(out)
        };
        Ok(Rule {
            class: class.to_owned(),
            dscp,
            protocols,
            src_ports: ports(&self.src_port, "src_port")?,
            dst_ports: ports(&self.dst_port, "dst_port")?,
            src_groups: names(&self.src_group, "src_group")?,
            dst_groups: names(&self.dst_group, "dst_group")?,
            src_peers: names(&self.src_peer, "src_peer")?,
            dst_peers: names(&self.dst_peer, "dst_peer")?,
        })
    }
}

fn bad_rate(text: &str) -> String {
    format!(
        "'{text}' is not a rate (bits per second: e.g. \"19mbit\", \"500kbit\", \"1.5gbit\"; a class or peer may also take a share of the uplink, \"30%\")"
    )
}

fn is_class_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use weft_core::qos::ClassId;

    use super::*;
    use crate::config::Config;

    const MINIMAL: &str =
        "[node]\nkey = \"node.key\"\ncertificate = \"node.crt\"\nca = \"ca.crt\"\n";

    fn qos(section: &str) -> Result<QosConfig, String> {
        Config::parse(
            Path::new("/etc/weft/weft.toml"),
            &format!("{MINIMAL}\n{section}"),
        )
        .map(|c| c.qos)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn no_section_means_the_core_defaults() {
        assert_eq!(qos("").unwrap(), QosConfig::default());
        assert_eq!(qos("[qos]\n").unwrap(), QosConfig::default());
    }

    #[test]
    fn the_full_section_parses() {
        let config = qos(r#"
[qos]
uplink = "19mbit"
burst = "5ms"
default_class = "interactive"
default_rules = true

[[qos.classes]]
name = "realtime"
priority = "realtime"
rate = "30%"
queue_packets = 256
queue_bytes = 131072

[[qos.classes]]
name = "interactive"
weight = 4

[[qos.classes]]
name = "capped"
weight = 2
rate = "5mbit"
aqm = true
codel_target = "10ms"
codel_interval = "200ms"
metric = "loss"

[[qos.classes]]
name = "bulk"
aqm = false

[[qos.rules]]
class = "realtime"
dscp = ["EF", 46, "cs5"]
protocol = ["udp"]
src_port = ["5000-5100"]
dst_port = [5001]

[[qos.rules]]
class = "capped"
dst_port = ["5201"]
dst_group = ["media"]
src_peer = ["a"]

[[qos.peers]]
name = "b"
rate = "5mbit"

[[qos.peers]]
name = "c"
rate = "10%"
"#)
        .unwrap();
        assert_eq!(config.uplink_bps, Some(19_000_000));
        assert_eq!(config.burst, Duration::from_millis(5));
        let names: Vec<_> = config.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["realtime", "interactive", "capped", "bulk"]);
        assert_eq!(config.classes[0], ClassConfig::realtime());
        assert_eq!(config.classes[1], ClassConfig::interactive());
        let capped = &config.classes[2];
        assert_eq!(capped.weight, 2);
        assert_eq!(capped.rate_limit, Some(RateLimit::BitsPerSecond(5_000_000)));
        assert_eq!(
            capped.aqm,
            Some(Aqm {
                target: Duration::from_millis(10),
                interval: Duration::from_millis(200)
            })
        );
        assert_eq!(capped.metric, PathMetric::Loss);
        assert_eq!(config.classes[3].aqm, None);
        assert_eq!(config.classes[3].metric, PathMetric::Loss, "bulk's default");
        let realtime_rule = &config.rules[0];
        assert_eq!(realtime_rule.dscp, [46, 40]);
        assert_eq!(realtime_rule.protocols, [17]);
        assert_eq!(
            realtime_rule.src_ports,
            [PortRange {
                start: 5000,
                end: 5100
            }]
        );
        assert_eq!(realtime_rule.dst_ports, [PortRange::single(5001)]);
        assert_eq!(config.rules[1].dst_groups, ["media"]);
        assert_eq!(config.rules[1].src_peers, ["a"]);
        // Default rules follow, except the one for "background", which is
        // not defined here.
        let appended: Vec<_> = config.rules[2..].iter().map(|r| r.class.as_str()).collect();
        assert_eq!(appended, ["realtime", "bulk"]);
        assert_eq!(
            config.peer_rates,
            [("b".to_owned(), 5_000_000), ("c".to_owned(), 1_900_000)]
        );
        assert_eq!(config.class_id("capped"), ClassId::from_index(2));
    }

    #[test]
    fn default_rules_can_be_left_out_and_custom_classes_pick_a_default() {
        let config = qos(
            "[qos]\ndefault_rules = false\n[[qos.classes]]\nname = \"voice\"\npriority = \"realtime\"\n\
             [[qos.classes]]\nname = \"rest\"\n",
        )
        .unwrap();
        assert!(config.rules.is_empty());
        assert_eq!(config.default_class, "rest", "the first normal class");
        assert_eq!(config.classes[0].priority, Priority::Realtime);
        assert_eq!(config.classes[1].weight, 1);
    }

    #[test]
    fn mistakes_name_the_key_and_the_value() {
        let cases = [
            (
                "[qos]\nuplink = \"19mbs\"\n",
                "weft.toml:7:10: qos.uplink: '19mbs' is not a rate",
            ),
            (
                "[qos]\nburst = \"2s\"\n",
                "qos.burst: '2s' is out of range 1ms..=1s",
            ),
            (
                "[qos]\ndefault_class = \"video\"\n",
                "qos.default_class: 'video' is not a defined class (defined: realtime, interactive, bulk, background)",
            ),
            (
                "[[qos.rules]]\nclass = \"video\"\n",
                "qos.rules[0].class: 'video' is not a defined class",
            ),
            (
                "[[qos.rules]]\nclass = \"bulk\"\ndscp = [\"EF\", \"XX\"]\n",
                "qos.rules[0].dscp[1]: 'XX' is not a DSCP",
            ),
            (
                "[[qos.rules]]\nclass = \"bulk\"\ndscp = [64]\n",
                "qos.rules[0].dscp[0]: '64' is not a DSCP",
            ),
            (
                "[[qos.rules]]\nclass = \"bulk\"\nprotocol = [\"tpc\"]\n",
                "qos.rules[0].protocol[0]: 'tpc' is not an IP protocol",
            ),
            (
                "[[qos.rules]]\nclass = \"bulk\"\ndst_port = [\"9-8\"]\n",
                "qos.rules[0].dst_port[0]: '9-8' is not a port or port range",
            ),
            (
                "[[qos.classes]]\nname = \"x\"\nrate = \"30%\"\n",
                "qos.classes[0].rate: '30%' is a share of the uplink, but qos.uplink is not set",
            ),
            (
                "[[qos.classes]]\nname = \"x\"\nrate = \"fast\"\n",
                "qos.classes[0].rate: 'fast' is not a rate",
            ),
            (
                "[[qos.classes]]\nname = \"x\"\nweight = 0\n",
                "qos.classes[0].weight: 0 is out of range 1..=1000",
            ),
            (
                "[[qos.classes]]\nname = \"x\"\npriority = \"high\"\n",
                "qos.classes[0].priority: 'high' is not a priority (realtime or normal)",
            ),
            (
                "[[qos.classes]]\nname = \"x\"\nmetric = \"speed\"\n",
                "qos.classes[0].metric: 'speed' is not a metric",
            ),
            (
                "[[qos.classes]]\nname = \"x\"\nqueue_bytes = 100\n",
                "qos.classes[0].queue_bytes: 100 is out of range 1500..=",
            ),
            (
                "[[qos.classes]]\nname = \"x\"\ncodel_target = \"200ms\"\n",
                "qos.classes[0].codel_target: the target (200ms) must not be longer than the interval (100ms)",
            ),
            (
                "[[qos.classes]]\nname = \"x\"\naqm = false\ncodel_target = \"2ms\"\n",
                "qos.classes[0].aqm: CoDel parameters are set but aqm = false",
            ),
            (
                "[[qos.classes]]\nname = \"x\"\n[[qos.classes]]\nname = \"x\"\n",
                "qos.classes[1].name: class 'x' is already qos.classes[0]",
            ),
            (
                "[[qos.classes]]\nname = \"a b\"\n",
                "qos.classes[0].name: 'a b' is not a class name",
            ),
            (
                "[[qos.peers]]\nname = \"b\"\nrate = \"1mbit\"\n[[qos.peers]]\nname = \"b\"\nrate = \"2mbit\"\n",
                "qos.peers[1].name: peer 'b' already has a rate in qos.peers[0]",
            ),
            (
                "[[qos.peers]]\nname = \"b\"\nrate = \"50%\"\n",
                "qos.peers[0].rate: '50%' is a share of the uplink, but qos.uplink is not set",
            ),
            (
                "[qos]\nshaping = true\n",
                "qos.shaping: unknown field `shaping`",
            ),
        ];
        for (section, expected) in cases {
            let error = qos(section).unwrap_err();
            assert!(
                error.contains(expected),
                "{section}\n=> {error}\nexpected {expected}"
            );
        }
    }
}
