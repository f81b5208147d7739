//! QoS configuration: traffic classes, classification rules, the uplink and
//! per-peer rates, their defaults and their validation.
//!
//! A configuration is plain data (the daemon fills it from TOML). Nothing
//! here runs on the data path: [`super::Classifier::new`] and
//! [`super::Scheduler::new`] validate it once and compile it into the
//! structures they use per packet. Every validation error names the class,
//! rule or peer at fault, so the daemon can show it to the operator as is.

use std::time::Duration;

use super::classify::{Rule, default_rules};

/// Most classes a configuration may define.
pub const MAX_CLASSES: usize = 16;
/// Most classification rules a configuration may hold (they are tried in
/// order for every packet).
pub const MAX_RULES: usize = 1024;
/// Most peers a configuration may give a rate limit.
pub const MAX_PEER_RATES: usize = 256;
/// Largest DRR weight of a class.
pub const MAX_WEIGHT: u32 = 1000;
/// Highest rate accepted anywhere (10 Tbit/s): keeps the token arithmetic
/// far from overflow.
pub const MAX_RATE_BPS: u64 = 10_000_000_000_000;
/// Default depth of every token bucket, as time at the bucket's rate: long
/// enough to cover a driver's 1 ms timer granularity without losing rate,
/// short enough that a full burst queued in the real bottleneck behind the
/// uplink adds only a few milliseconds of delay.
pub const DEFAULT_BURST: Duration = Duration::from_millis(5);
/// Shortest accepted bucket depth.
pub const MIN_BURST: Duration = Duration::from_millis(1);
/// Longest accepted bucket depth.
pub const MAX_BURST: Duration = Duration::from_secs(1);
/// Smallest accepted byte limit of a class queue (one full-size packet).
pub const MIN_QUEUE_BYTES: usize = 1500;

/// A traffic class: an index into [`QosConfig::classes`], valid for the
/// configuration (and the classifier and scheduler built from it) that
/// produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClassId(u8);

impl ClassId {
    /// The class's position in [`QosConfig::classes`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The class at `index`; `None` beyond [`MAX_CLASSES`].
    pub fn from_index(index: usize) -> Option<ClassId> {
        if index < MAX_CLASSES {
            u8::try_from(index).ok().map(ClassId)
        } else {
            None
        }
    }
}

/// How a class is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Strict priority over every normal class, while under its rate cap.
    /// Among several realtime classes, the one listed first wins.
    Realtime,
    /// Weighted fair share (deficit round robin) of what realtime leaves.
    Normal,
}

/// What the routing layer should optimise a class's paths for. The node
/// maps it to its route metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathMetric {
    /// Lowest latency (realtime and interactive traffic).
    Latency,
    /// Lowest loss (bulk and background traffic).
    Loss,
}

/// A rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimit {
    /// An absolute rate in bits per second.
    BitsPerSecond(u64),
    /// A share of [`QosConfig::uplink_bps`] in percent (1..=100). Without an
    /// uplink rate there is nothing to take a share of, and the class is not
    /// limited.
    UplinkPercent(u8),
}

impl RateLimit {
    /// The limit in bits per second given the uplink rate, or `None` when
    /// it is a share of an unknown uplink.
    pub fn resolve(self, uplink_bps: Option<u64>) -> Option<u64> {
        match self {
            RateLimit::BitsPerSecond(bps) => Some(bps),
            RateLimit::UplinkPercent(percent) => uplink_bps.map(|uplink| {
                let bps = u128::from(uplink) * u128::from(percent) / 100;
                u64::try_from(bps).unwrap_or(u64::MAX).max(1)
            }),
        }
    }

    /// Parses `"30%"` as a share of the uplink, anything else as
    /// [`parse_bps`] does.
    pub fn parse(text: &str) -> Option<RateLimit> {
        match text.trim().strip_suffix('%') {
            Some(percent) => percent
                .trim()
                .parse()
                .ok()
                .filter(|p| (1..=100).contains(p))
                .map(RateLimit::UplinkPercent),
            None => parse_bps(text).map(RateLimit::BitsPerSecond),
        }
    }
}

/// Parses a rate in bits per second, case-insensitive: a plain number
/// (`"20000000"`), or a number (decimals allowed) with an SI unit of bits
/// in the style of `tc`: `bit`, `kbit`, `mbit`, `gbit`, `tbit`, or just
/// `k`, `m`, `g`, `t`, optionally followed by `/s` (`"20mbit"`,
/// `"1.5 Gbit/s"`, `"500k"`). Byte-based and ambiguous forms (`bps`,
/// `MB`) are refused. `None` also for 0 and for rates above
/// [`MAX_RATE_BPS`].
pub fn parse_bps(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let text = text.strip_suffix("/s").unwrap_or(&text).trim_end();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u128 = match unit.trim() {
        "" | "bit" => 1,
        "k" | "kbit" => 1_000,
        "m" | "mbit" => 1_000_000,
        "g" | "gbit" => 1_000_000_000,
        "t" | "tbit" => 1_000_000_000_000,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u128 = whole.parse().ok()?;
    let scale = 10u128.pow(u32::try_from(fraction.len()).ok()?);
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    let bps = whole
        .checked_mul(multiplier)?
        .checked_add(fraction * multiplier / scale)?;
    u64::try_from(bps)
        .ok()
        .filter(|&bps| bps > 0 && bps <= MAX_RATE_BPS)
}

/// Active queue management of a class: CoDel (RFC 8289) parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aqm {
    /// Acceptable standing queue delay (RFC 8289 TARGET, 5 ms).
    pub target: Duration,
    /// Time the delay may stay above `target` before dropping starts, and
    /// the base of the drop spacing (RFC 8289 INTERVAL, 100 ms: a
    /// worst-case round-trip time).
    pub interval: Duration,
}

impl Default for Aqm {
    /// The RFC 8289 defaults: target 5 ms, interval 100 ms.
    fn default() -> Self {
        Self {
            target: Duration::from_millis(5),
            interval: Duration::from_millis(100),
        }
    }
}

/// One traffic class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassConfig {
    /// Name used in rules, statistics and the CLI.
    pub name: String,
    /// Strict priority or weighted share.
    pub priority: Priority,
    /// Share among normal classes (deficit round robin: a class is offered
    /// `weight` × 1500 bytes per round). Ignored for realtime classes.
    pub weight: u32,
    /// Hard rate cap: traffic above it waits in the queue (and is dropped
    /// by the AQM or the queue limit), even when the uplink is idle.
    pub rate_limit: Option<RateLimit>,
    /// Most packets queued (per lane: see the scheduler).
    pub queue_packets: usize,
    /// Most bytes queued (per lane). When the lane drains at a known rate
    /// (the class's cap, a peer's limit, else the uplink), also at most
    /// 250 ms of that rate (at least 64 KiB), so that a flood that does not
    /// slow down cannot build seconds of delay.
    pub queue_bytes: usize,
    /// Sojourn-time dropping; `None`: tail drop at the limits only.
    pub aqm: Option<Aqm>,
    /// What the class's paths are optimised for.
    pub metric: PathMetric,
}

impl ClassConfig {
    /// A normal class with the given weight, no cap, default queue limits
    /// and AQM, routed for latency.
    pub fn normal(name: &str, weight: u32) -> Self {
        Self {
            name: name.to_owned(),
            priority: Priority::Normal,
            weight,
            rate_limit: None,
            queue_packets: 2048,
            queue_bytes: 2 * 1024 * 1024,
            aqm: Some(Aqm::default()),
            metric: PathMetric::Latency,
        }
    }

    /// The default `realtime` class: strict priority, capped at 30 % of the
    /// uplink, a short queue (a realtime packet that waits long is useless).
    pub fn realtime() -> Self {
        Self {
            priority: Priority::Realtime,
            weight: 1,
            rate_limit: Some(RateLimit::UplinkPercent(30)),
            queue_packets: 256,
            queue_bytes: 128 * 1024,
            ..Self::normal("realtime", 1)
        }
    }

    /// The default `interactive` class (weight 4), where unmatched traffic
    /// goes.
    pub fn interactive() -> Self {
        Self::normal("interactive", 4)
    }

    /// The default `bulk` class (weight 2), routed for low loss.
    pub fn bulk() -> Self {
        Self {
            metric: PathMetric::Loss,
            ..Self::normal("bulk", 2)
        }
    }

    /// The default `background` class (weight 1), routed for low loss.
    pub fn background() -> Self {
        Self {
            metric: PathMetric::Loss,
            ..Self::normal("background", 1)
        }
    }
}

/// QoS settings of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QosConfig {
    /// Rate the node shapes its whole underlay egress to (bits per second,
    /// set a little below the real uplink so queues form in weft); `None`:
    /// no egress shaping.
    pub uplink_bps: Option<u64>,
    /// Depth of every token bucket, as time at the bucket's own rate.
    pub burst: Duration,
    /// The classes, in priority order for realtime ones.
    pub classes: Vec<ClassConfig>,
    /// Class of traffic that no rule matches.
    pub default_class: String,
    /// Classification rules, tried in order; the first match wins.
    pub rules: Vec<Rule>,
    /// Rate limits of traffic to given peers (certificate name, bits per
    /// second).
    pub peer_rates: Vec<(String, u64)>,
}

impl Default for QosConfig {
    /// No shaping; classes realtime, interactive (the default), bulk and
    /// background; rules by DSCP (see [`default_rules`]); no peer limits.
    fn default() -> Self {
        Self {
            uplink_bps: None,
            burst: DEFAULT_BURST,
            classes: vec![
                ClassConfig::realtime(),
                ClassConfig::interactive(),
                ClassConfig::bulk(),
                ClassConfig::background(),
            ],
            default_class: "interactive".to_owned(),
            rules: default_rules(),
            peer_rates: Vec::new(),
        }
    }
}

impl QosConfig {
    /// The class called `name`.
    pub fn class_id(&self, name: &str) -> Option<ClassId> {
        let index = self.classes.iter().position(|c| c.name == name)?;
        ClassId::from_index(index)
    }

    /// The configuration of `class`.
    pub fn class(&self, class: ClassId) -> Option<&ClassConfig> {
        self.classes.get(class.index())
    }

    /// The path metric of `class` (latency for an unknown class).
    pub fn metric(&self, class: ClassId) -> PathMetric {
        self.class(class).map_or(PathMetric::Latency, |c| c.metric)
    }

    /// The rate cap of `class` in bits per second, if any.
    pub fn class_rate_bps(&self, class: ClassId) -> Option<u64> {
        self.class(class)?.rate_limit?.resolve(self.uplink_bps)
    }

    /// Checks every setting; the error says what is wrong and where.
    pub fn validate(&self) -> Result<(), QosConfigError> {
        if let Some(bps) = self.uplink_bps {
            check_rate("uplink", bps)?;
        }
        if self.burst < MIN_BURST || self.burst > MAX_BURST {
            return Err(QosConfigError::Burst(self.burst));
        }
        if self.classes.is_empty() {
            return Err(QosConfigError::NoClasses);
        }
        if self.classes.len() > MAX_CLASSES {
            return Err(QosConfigError::TooManyClasses(self.classes.len()));
        }
        for (i, class) in self.classes.iter().enumerate() {
            validate_class(class)?;
            if self.classes[..i].iter().any(|c| c.name == class.name) {
                return Err(QosConfigError::DuplicateClass(class.name.clone()));
            }
        }
        if self.class_id(&self.default_class).is_none() {
            return Err(QosConfigError::UnknownDefaultClass(
                self.default_class.clone(),
            ));
        }
        if self.rules.len() > MAX_RULES {
            return Err(QosConfigError::TooManyRules(self.rules.len()));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate(i + 1, |name| self.class_id(name).is_some())?;
        }
        if self.peer_rates.len() > MAX_PEER_RATES {
            return Err(QosConfigError::TooManyPeerRates(self.peer_rates.len()));
        }
        for (i, (name, bps)) in self.peer_rates.iter().enumerate() {
            if name.is_empty() {
                return Err(QosConfigError::EmptyPeerName);
            }
            if self.peer_rates[..i].iter().any(|(n, _)| n == name) {
                return Err(QosConfigError::DuplicatePeer(name.clone()));
            }
            check_rate(&format!("peer {name:?}"), *bps)?;
        }
        Ok(())
    }
}

/// Why a QoS configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QosConfigError {
    /// No class at all.
    #[error("no traffic classes configured")]
    NoClasses,
    /// More than [`MAX_CLASSES`] classes.
    #[error("{0} traffic classes configured; at most {MAX_CLASSES} are allowed")]
    TooManyClasses(usize),
    /// A class without a name.
    #[error("a traffic class has an empty name")]
    EmptyClassName,
    /// Two classes with one name.
    #[error("traffic class {0:?} is defined twice")]
    DuplicateClass(String),
    /// A weight of 0 or above [`MAX_WEIGHT`].
    #[error("class {class:?}: weight {weight} is out of range 1..={MAX_WEIGHT}")]
    Weight {
        /// The class.
        class: String,
        /// Its weight.
        weight: u32,
    },
    /// A queue that cannot hold a full-size packet.
    #[error(
        "class {class:?}: queue limits must allow at least 1 packet and {MIN_QUEUE_BYTES} bytes \
         (got {packets} packets, {bytes} bytes)"
    )]
    QueueLimit {
        /// The class.
        class: String,
        /// Its packet limit.
        packets: usize,
        /// Its byte limit.
        bytes: usize,
    },
    /// A rate of 0 or above [`MAX_RATE_BPS`].
    #[error("{what}: rate {bps} bit/s is out of range 1..={MAX_RATE_BPS}")]
    Rate {
        /// Which rate (uplink, class or peer).
        what: String,
        /// The rate.
        bps: u64,
    },
    /// An uplink share of 0 % or above 100 %.
    #[error("class {class:?}: uplink share {percent} % is out of range 1..=100")]
    Percent {
        /// The class.
        class: String,
        /// The share.
        percent: u8,
    },
    /// CoDel parameters that make no sense.
    #[error(
        "class {class:?}: AQM target ({target:?}) must be positive and no longer than the \
         interval ({interval:?}), and the interval at most 10 s"
    )]
    Aqm {
        /// The class.
        class: String,
        /// Its target.
        target: Duration,
        /// Its interval.
        interval: Duration,
    },
    /// A bucket depth outside [`MIN_BURST`]..=[`MAX_BURST`].
    #[error("burst {0:?} is out of range {MIN_BURST:?}..={MAX_BURST:?}")]
    Burst(Duration),
    /// The default class is not defined.
    #[error("default class {0:?} is not a defined class")]
    UnknownDefaultClass(String),
    /// More than [`MAX_RULES`] rules.
    #[error("{0} classification rules configured; at most {MAX_RULES} are allowed")]
    TooManyRules(usize),
    /// A rule naming a class that does not exist.
    #[error("rule {rule}: class {class:?} is not a defined class")]
    UnknownRuleClass {
        /// Position of the rule, from 1.
        rule: usize,
        /// The class it names.
        class: String,
    },
    /// A DSCP above 63.
    #[error("rule {rule}: DSCP {dscp} is out of range 0..=63")]
    Dscp {
        /// Position of the rule, from 1.
        rule: usize,
        /// The value.
        dscp: u8,
    },
    /// A port range whose start lies after its end.
    #[error("rule {rule}: port range {start}-{end} is empty")]
    PortRange {
        /// Position of the rule, from 1.
        rule: usize,
        /// First port.
        start: u16,
        /// Last port.
        end: u16,
    },
    /// More than [`MAX_PEER_RATES`] peer limits.
    #[error("{0} peer rate limits configured; at most {MAX_PEER_RATES} are allowed")]
    TooManyPeerRates(usize),
    /// A peer limit without a peer name.
    #[error("a peer rate limit has an empty peer name")]
    EmptyPeerName,
    /// Two limits for one peer.
    #[error("peer {0:?} has two rate limits")]
    DuplicatePeer(String),
}

fn validate_class(class: &ClassConfig) -> Result<(), QosConfigError> {
    let name = &class.name;
    if name.is_empty() {
        return Err(QosConfigError::EmptyClassName);
    }
    if class.weight == 0 || class.weight > MAX_WEIGHT {
        return Err(QosConfigError::Weight {
            class: name.clone(),
            weight: class.weight,
        });
    }
    if class.queue_packets == 0 || class.queue_bytes < MIN_QUEUE_BYTES {
        return Err(QosConfigError::QueueLimit {
            class: name.clone(),
            packets: class.queue_packets,
            bytes: class.queue_bytes,
        });
    }
    match class.rate_limit {
        None => {}
        Some(RateLimit::BitsPerSecond(bps)) => check_rate(&format!("class {name:?}"), bps)?,
        Some(RateLimit::UplinkPercent(percent)) if percent == 0 || percent > 100 => {
            return Err(QosConfigError::Percent {
                class: name.clone(),
                percent,
            });
        }
        Some(RateLimit::UplinkPercent(_)) => {}
    }
    if let Some(aqm) = class.aqm
        && (aqm.target.is_zero()
            || aqm.target > aqm.interval
            || aqm.interval > Duration::from_secs(10))
    {
        return Err(QosConfigError::Aqm {
            class: name.clone(),
            target: aqm.target,
            interval: aqm.interval,
        });
    }
    Ok(())
}

fn check_rate(what: &str, bps: u64) -> Result<(), QosConfigError> {
    if bps == 0 || bps > MAX_RATE_BPS {
        return Err(QosConfigError::Rate {
            what: what.to_owned(),
            bps,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qos::PortRange;

    #[test]
    fn the_default_configuration_is_valid_and_has_four_classes() {
        let config = QosConfig::default();
        config.validate().unwrap();
        let names: Vec<_> = config.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["realtime", "interactive", "bulk", "background"]);
        let realtime = config.class_id("realtime").unwrap();
        assert_eq!(realtime.index(), 0);
        assert_eq!(config.classes[0].priority, Priority::Realtime);
        assert_eq!(config.class_rate_bps(realtime), None, "no uplink, no cap");
        let shaped = QosConfig {
            uplink_bps: Some(20_000_000),
            ..QosConfig::default()
        };
        assert_eq!(shaped.class_rate_bps(realtime), Some(6_000_000));
        let weights: Vec<_> = config.classes[1..].iter().map(|c| c.weight).collect();
        assert_eq!(weights, [4, 2, 1]);
    }

    #[test]
    fn classes_pick_the_path_metric() {
        let config = QosConfig::default();
        let metric = |name| config.metric(config.class_id(name).unwrap());
        assert_eq!(metric("realtime"), PathMetric::Latency);
        assert_eq!(metric("interactive"), PathMetric::Latency);
        assert_eq!(metric("bulk"), PathMetric::Loss);
        assert_eq!(metric("background"), PathMetric::Loss);
        assert_eq!(
            config.metric(ClassId::from_index(9).unwrap()),
            PathMetric::Latency
        );
    }

    #[test]
    fn class_ids_are_bounded() {
        assert_eq!(ClassId::from_index(15).unwrap().index(), 15);
        assert_eq!(ClassId::from_index(MAX_CLASSES), None);
        assert_eq!(ClassId::from_index(usize::MAX), None);
    }

    #[test]
    fn rates_parse_in_tc_style_units() {
        assert_eq!(parse_bps("20000000"), Some(20_000_000));
        assert_eq!(parse_bps("20mbit"), Some(20_000_000));
        assert_eq!(parse_bps("20 Mbit/s"), Some(20_000_000));
        assert_eq!(parse_bps("1.5gbit"), Some(1_500_000_000));
        assert_eq!(parse_bps("500k"), Some(500_000));
        assert_eq!(parse_bps("2.25M"), Some(2_250_000));
        assert_eq!(parse_bps("64 kbit"), Some(64_000));
        assert_eq!(parse_bps("1bit"), Some(1));
        assert_eq!(parse_bps("10tbit"), Some(MAX_RATE_BPS));
        assert_eq!(parse_bps("11tbit"), None);
        assert_eq!(parse_bps("0"), None);
        assert_eq!(parse_bps("0.0001bit"), None);
        assert_eq!(parse_bps("20mbps"), None, "bytes or bits? refused");
        assert_eq!(parse_bps("20MB"), None);
        assert_eq!(parse_bps("mbit"), None);
        assert_eq!(parse_bps(".5m"), None);
        assert_eq!(parse_bps("1.2.3m"), None);
        assert_eq!(parse_bps("-5m"), None);
        assert_eq!(parse_bps(""), None);
        assert_eq!(
            parse_bps("99999999999999999999999999999999999999999999"),
            None
        );
        assert_eq!(RateLimit::parse("30%"), Some(RateLimit::UplinkPercent(30)));
        assert_eq!(
            RateLimit::parse(" 100 % "),
            Some(RateLimit::UplinkPercent(100))
        );
        assert_eq!(RateLimit::parse("0%"), None);
        assert_eq!(RateLimit::parse("101%"), None);
        assert_eq!(
            RateLimit::parse("5mbit"),
            Some(RateLimit::BitsPerSecond(5_000_000))
        );
    }

    #[test]
    fn uplink_shares_round_down_but_never_to_zero() {
        assert_eq!(RateLimit::UplinkPercent(30).resolve(Some(1000)), Some(300));
        assert_eq!(RateLimit::UplinkPercent(1).resolve(Some(50)), Some(1));
        assert_eq!(RateLimit::UplinkPercent(100).resolve(None), None);
        assert_eq!(RateLimit::BitsPerSecond(7).resolve(None), Some(7));
    }

    fn error_of(change: impl FnOnce(&mut QosConfig)) -> String {
        let mut config = QosConfig::default();
        change(&mut config);
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn invalid_configurations_are_refused_with_a_clear_message() {
        assert_eq!(
            error_of(|c| c.classes.clear()),
            "no traffic classes configured"
        );
        assert_eq!(
            error_of(|c| c.classes.push(ClassConfig::bulk())),
            "traffic class \"bulk\" is defined twice"
        );
        assert_eq!(
            error_of(|c| c.classes[2].weight = 0),
            "class \"bulk\": weight 0 is out of range 1..=1000"
        );
        assert_eq!(
            error_of(|c| c.classes[1].queue_bytes = 100),
            "class \"interactive\": queue limits must allow at least 1 packet and 1500 bytes \
             (got 2048 packets, 100 bytes)"
        );
        assert_eq!(
            error_of(|c| c.classes[0].rate_limit = Some(RateLimit::UplinkPercent(0))),
            "class \"realtime\": uplink share 0 % is out of range 1..=100"
        );
        assert_eq!(
            error_of(|c| c.classes[3].rate_limit = Some(RateLimit::BitsPerSecond(0))),
            "class \"background\": rate 0 bit/s is out of range 1..=10000000000000"
        );
        assert_eq!(
            error_of(|c| c.uplink_bps = Some(0)),
            "uplink: rate 0 bit/s is out of range 1..=10000000000000"
        );
        assert!(
            error_of(|c| {
                c.classes[1].aqm = Some(Aqm {
                    target: Duration::from_millis(200),
                    interval: Duration::from_millis(100),
                })
            })
            .starts_with("class \"interactive\": AQM target (200ms) must be positive")
        );
        assert_eq!(
            error_of(|c| c.burst = Duration::ZERO),
            "burst 0ns is out of range 1ms..=1s"
        );
        assert_eq!(
            error_of(|c| c.default_class = "best-effort".into()),
            "default class \"best-effort\" is not a defined class"
        );
        assert_eq!(
            error_of(|c| c.classes[1].name = String::new()),
            "a traffic class has an empty name"
        );
        assert_eq!(
            error_of(|c| c.rules.push(Rule {
                class: "video".into(),
                ..Rule::default()
            })),
            format!(
                "rule {}: class \"video\" is not a defined class",
                QosConfig::default().rules.len() + 1
            )
        );
        assert_eq!(
            error_of(|c| c.rules = vec![Rule {
                class: "bulk".into(),
                dscp: vec![64],
                ..Rule::default()
            }]),
            "rule 1: DSCP 64 is out of range 0..=63"
        );
        assert_eq!(
            error_of(|c| c.rules = vec![Rule {
                class: "bulk".into(),
                dst_ports: vec![PortRange { start: 9, end: 8 }],
                ..Rule::default()
            }]),
            "rule 1: port range 9-8 is empty"
        );
        assert_eq!(
            error_of(|c| c.peer_rates = vec![("b".into(), 1), ("b".into(), 2)]),
            "peer \"b\" has two rate limits"
        );
        assert_eq!(
            error_of(|c| c.peer_rates = vec![("b".into(), 0)]),
            "peer \"b\": rate 0 bit/s is out of range 1..=10000000000000"
        );
        assert_eq!(
            error_of(|c| c.peer_rates = vec![(String::new(), 5)]),
            "a peer rate limit has an empty peer name"
        );
        assert_eq!(
            error_of(|c| c.classes = (0..17)
                .map(|i| ClassConfig::normal(&format!("c{i}"), 1))
                .collect()),
            "17 traffic classes configured; at most 16 are allowed"
        );
    }
}
