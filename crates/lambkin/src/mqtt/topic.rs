//! What the broker takes as a topic or a topic filter, checked before a message is spooled
//! or a subscription made: a topic the broker or the MQTT client refuses would otherwise sit
//! at the head of the spool, and every later message would wait behind it.
//!
//! Always (MQTT 5 §1.5.4, §4.7; MQTT 3.1.1 §1.5.3, §4.7): not empty, at most 65,535 bytes of
//! UTF-8, no U+0000; a topic has no `+` or `#`; a filter has them only as whole levels, `#`
//! only last. For AWS IoT Core (a broker under `amazonaws.com`), its own limits too, as the
//! Greengrass nucleus checks them (`IotCoreTopicValidator`): at most 7 `/` and 256 bytes,
//! not counting the `$aws/rules/RULE/` prefix of Basic Ingest topics or a subscription's
//! `$share/GROUP/` (MQTT 5); another reserved `$` topic at most 512 bytes on MQTT 5 (AWS IoT
//! checks the rest), and as any topic on MQTT 3.1.1.
//!
//! A filter may name an MQTT 5 shared subscription (§4.8.2), `$share/GROUP/FILTER`: the
//! broker hands each message matching FILTER to one member of GROUP (the group name has at
//! least one character and no `/`, `+` or `#`; FILTER is any filter). MQTT 3.1.1 has no shared
//! subscriptions: there such a filter is refused, naming the protocol, rather than sent to a
//! broker that would take it as a plain filter beginning with the level `$share`.

use lambkin_proto::ipc::shapes::iot_core::MqttProperties;

use crate::config::MqttVersion;
use crate::pubsub::Filter;

/// The longest string MQTT encodes: a two-byte length.
pub const MAX_MQTT_TOPIC: usize = 65_535;
/// AWS IoT Core's limits on a topic, past any reserved prefix.
pub const IOT_CORE_MAX_TOPIC: usize = 256;
pub const IOT_CORE_MAX_SLASHES: usize = 7;
/// An unknown reserved topic on MQTT 5: AWS IoT checks it; this keeps it reasonable.
pub const IOT_CORE_MAX_RESERVED_TOPIC: usize = 512;

/// Which broker's rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRules {
    /// Any MQTT broker: the protocol's rules.
    Mqtt { version: MqttVersion },
    /// AWS IoT Core: the protocol's rules and its own limits.
    AwsIotCore { version: MqttVersion },
}

impl TopicRules {
    /// AWS IoT Core's rules for a broker under `amazonaws.com` (its data endpoints,
    /// `…-ats.iot.REGION.amazonaws.com`), the protocol's for any other.
    pub fn for_broker(host: &str, version: MqttVersion) -> Self {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn") {
            Self::AwsIotCore { version }
        } else {
            Self::Mqtt { version }
        }
    }

    fn version(self) -> MqttVersion {
        match self {
            Self::Mqtt { version } | Self::AwsIotCore { version } => version,
        }
    }
}

/// Whether a topic is published to or subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Publish,
    Subscribe,
}

/// Why a topic or filter is refused; the texts for AWS IoT Core's limits are the nucleus's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicRefused {
    #[error("Topic must not be empty")]
    Empty,
    #[error("Publish topics must not contain wildcard characters of '#' or '+'")]
    Wildcard,
    #[error("topic must not contain the null character (U+0000)")]
    Nul,
    #[error("topic is {len} bytes, more than the {max} an MQTT string holds")]
    TooLongForMqtt { len: usize, max: usize },
    #[error("{0}")]
    Filter(String),
    #[error("{filter:?}: a shared subscription is $share/GROUP/FILTER, with a group name of at least one character and no '/', '+' or '#', and a filter")]
    BadSharedFilter { filter: String },
    #[error("{filter:?}: shared subscriptions ($share/GROUP/FILTER) need MQTT 5; the connection is MQTT 3.1.1 ([mqtt] version = \"mqtt3\")")]
    SharedNeedsMqtt5 { filter: String },
    #[error("The request topic must have no more than {IOT_CORE_MAX_SLASHES} forward slashes (/)")]
    TooManySlashes,
    #[error("The topic size of request must be no larger than {IOT_CORE_MAX_TOPIC} bytes of UTF-8 encoded characters. This excludes the first 3 mandatory segments for Basic Ingest topics ($AWS/rules/rule-name/)")]
    TooLongForIotCore,
    #[error("Reserved topic total length is greater than {IOT_CORE_MAX_RESERVED_TOPIC} bytes of UTF-8 encoded characters and is most likely over the IoT Core limit of {IOT_CORE_MAX_TOPIC} bytes (excluding prefixes).")]
    ReservedTooLong,
}

/// Checks a topic to publish to.
pub fn check_topic(topic: &str, rules: TopicRules) -> Result<(), TopicRefused> {
    check_string(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicRefused::Wildcard);
    }
    check_iot_core(topic, rules, Use::Publish)
}

/// The prefix of an MQTT 5 shared subscription's filter.
pub const SHARE_PREFIX: &str = "$share/";

/// A filter as subscribed: its group when it is a shared subscription, and the filter
/// messages are matched against (the whole filter, or what follows `$share/GROUP/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed<'a> {
    pub group: Option<&'a str>,
    pub filter: &'a str,
}

/// Splits `$share/GROUP/FILTER` (MQTT 5 §4.8.2; `$share` is case-sensitive there); any other
/// filter is its own. A filter that begins with `$share/` without a valid group and filter
/// after it is refused.
pub fn subscribed(filter: &str) -> Result<Subscribed<'_>, TopicRefused> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        return Ok(Subscribed {
            group: None,
            filter,
        });
    };
    let bad = || TopicRefused::BadSharedFilter {
        filter: filter.to_owned(),
    };
    let (group, inner) = rest.split_once('/').ok_or_else(bad)?;
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return Err(bad());
    }
    Ok(Subscribed {
        group: Some(group),
        filter: inner,
    })
}

/// Checks a filter to subscribe to; a shared subscription's on MQTT 5 only.
pub fn check_filter(filter: &str, rules: TopicRules) -> Result<(), TopicRefused> {
    check_string(filter)?;
    let subscribed = subscribed(filter)?;
    if subscribed.group.is_some() && rules.version() == MqttVersion::Mqtt3 {
        return Err(TopicRefused::SharedNeedsMqtt5 {
            filter: filter.to_owned(),
        });
    }
    Filter::parse(subscribed.filter).map_err(|e| TopicRefused::Filter(e.to_string()))?;
    check_iot_core(filter, rules, Use::Subscribe)
}

/// Checks the MQTT 5 members of a message: a response topic is a topic (no wildcard), and no
/// string carries U+0000.
pub fn check_properties(properties: &MqttProperties) -> Result<(), TopicRefused> {
    if let Some(response) = &properties.response_topic {
        check_string(response)?;
        if response.contains(['+', '#']) {
            return Err(TopicRefused::Wildcard);
        }
    }
    let strings = properties.content_type.iter().chain(
        properties
            .user_properties
            .iter()
            .flatten()
            .flat_map(|u| [&u.key, &u.value]),
    );
    for s in strings {
        if s.contains('\0') {
            return Err(TopicRefused::Nul);
        }
    }
    Ok(())
}

fn check_string(topic: &str) -> Result<(), TopicRefused> {
    if topic.is_empty() {
        return Err(TopicRefused::Empty);
    }
    if topic.len() > MAX_MQTT_TOPIC {
        return Err(TopicRefused::TooLongForMqtt {
            len: topic.len(),
            max: MAX_MQTT_TOPIC,
        });
    }
    if topic.contains('\0') {
        return Err(TopicRefused::Nul);
    }
    Ok(())
}

fn check_iot_core(topic: &str, rules: TopicRules, used: Use) -> Result<(), TopicRefused> {
    let TopicRules::AwsIotCore { version } = rules else {
        return Ok(());
    };
    if !topic.starts_with('$') {
        return check_effective(topic);
    }
    let mqtt5 = version == MqttVersion::Mqtt5;
    if mqtt5 && used == Use::Subscribe {
        if let Some(rest) = after_levels(topic, "$share/", 1) {
            return check_effective(rest);
        }
    }
    if let Some(rest) = after_levels(topic, "$aws/rules/", 1) {
        return check_effective(rest);
    }
    if mqtt5 {
        if topic.len() > IOT_CORE_MAX_RESERVED_TOPIC {
            return Err(TopicRefused::ReservedTooLong);
        }
        return Ok(());
    }
    check_effective(topic)
}

/// What follows `prefix` (matched ignoring ASCII case) and `levels` more non-empty levels,
/// when something does.
fn after_levels<'a>(topic: &'a str, prefix: &str, levels: usize) -> Option<&'a str> {
    let head = topic.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let mut rest = &topic[prefix.len()..];
    for _ in 0..levels {
        let (level, after) = rest.split_once('/')?;
        if level.is_empty() {
            return None;
        }
        rest = after;
    }
    (!rest.is_empty()).then_some(rest)
}

fn check_effective(topic: &str) -> Result<(), TopicRefused> {
    if topic.bytes().filter(|b| *b == b'/').count() > IOT_CORE_MAX_SLASHES {
        return Err(TopicRefused::TooManySlashes);
    }
    if topic.len() > IOT_CORE_MAX_TOPIC {
        return Err(TopicRefused::TooLongForIotCore);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IOT5: TopicRules = TopicRules::AwsIotCore {
        version: MqttVersion::Mqtt5,
    };
    const IOT3: TopicRules = TopicRules::AwsIotCore {
        version: MqttVersion::Mqtt3,
    };
    const MQTT5: TopicRules = TopicRules::Mqtt {
        version: MqttVersion::Mqtt5,
    };
    const MQTT3: TopicRules = TopicRules::Mqtt {
        version: MqttVersion::Mqtt3,
    };

    #[test]
    fn every_broker_gets_topics_mqtt_can_carry() {
        for rules in [MQTT5, MQTT3, IOT5, IOT3] {
            assert_eq!(check_topic("", rules), Err(TopicRefused::Empty));
            assert_eq!(check_topic("dev/+", rules), Err(TopicRefused::Wildcard));
            assert_eq!(check_topic("dev/#", rules), Err(TopicRefused::Wildcard));
            assert_eq!(check_topic("dev/\0", rules), Err(TopicRefused::Nul));
            assert_eq!(check_topic("dev/a1/telemetry", rules), Ok(()));
            assert_eq!(check_filter("dev/+/telemetry", rules), Ok(()));
            assert_eq!(check_filter("dev/#", rules), Ok(()));
            assert!(matches!(
                check_filter("dev/#/x", rules),
                Err(TopicRefused::Filter(_))
            ));
            assert!(matches!(
                check_filter("dev+", rules),
                Err(TopicRefused::Filter(_))
            ));
            assert_eq!(check_filter("a\0", rules), Err(TopicRefused::Nul));
        }
        let long = "a".repeat(MAX_MQTT_TOPIC + 1);
        assert_eq!(
            check_topic(&long, MQTT5),
            Err(TopicRefused::TooLongForMqtt {
                len: MAX_MQTT_TOPIC + 1,
                max: MAX_MQTT_TOPIC
            })
        );
        // Another broker takes what IoT Core would not.
        assert_eq!(check_topic(&"a/".repeat(100), MQTT5), Ok(()));
        assert_eq!(check_topic(&"a".repeat(MAX_MQTT_TOPIC), MQTT5), Ok(()));
    }

    #[test]
    fn mqtt5_properties_are_strings_mqtt_can_carry() {
        let mut p = MqttProperties::default();
        assert_eq!(check_properties(&p), Ok(()));
        p.response_topic = Some("reply/+".into());
        assert_eq!(check_properties(&p), Err(TopicRefused::Wildcard));
        p.response_topic = Some("reply/me".into());
        p.content_type = Some("text\0".into());
        assert_eq!(check_properties(&p), Err(TopicRefused::Nul));
    }

    #[test]
    fn aws_iot_core_limits_apply_past_reserved_prefixes() {
        let eight = "a/b/c/d/e/f/g/h/i";
        assert_eq!(check_topic("a/b/c/d/e/f/g/h", IOT5), Ok(()));
        assert_eq!(check_topic(eight, IOT5), Err(TopicRefused::TooManySlashes));
        assert_eq!(check_filter(eight, IOT5), Err(TopicRefused::TooManySlashes));
        assert_eq!(check_topic(&"a".repeat(256), IOT5), Ok(()));
        assert_eq!(
            check_topic(&"a".repeat(257), IOT5),
            Err(TopicRefused::TooLongForIotCore)
        );
        // Basic Ingest: the rule's prefix is not counted.
        let ingest = format!("$aws/rules/my_rule/{}", "a".repeat(256));
        assert_eq!(check_topic(&ingest, IOT5), Ok(()));
        assert_eq!(check_topic("$AWS/Rules/r/a/b/c/d/e/f/g/h", IOT3), Ok(()));
        assert_eq!(
            check_topic("$aws/rules/r/a/b/c/d/e/f/g/h/i", IOT3),
            Err(TopicRefused::TooManySlashes)
        );
        // Shared subscriptions, on MQTT 5, subscribing only.
        assert_eq!(check_filter("$share/g/a/b/c/d/e/f/g/h", IOT5), Ok(()));
        assert!(matches!(
            check_filter("$share/g/a/b/c/d/e/f/g/h", IOT3),
            Err(TopicRefused::SharedNeedsMqtt5 { .. })
        ));
        // Other reserved topics: AWS IoT's own limits on MQTT 5, as any topic on 3.1.1.
        let shadow = "$aws/things/thing/shadow/name/n/update/accepted/x";
        assert_eq!(check_topic(shadow, IOT5), Ok(()));
        assert_eq!(check_topic(shadow, IOT3), Err(TopicRefused::TooManySlashes));
        assert_eq!(
            check_topic(&format!("$x/{}", "a".repeat(600)), IOT5),
            Err(TopicRefused::ReservedTooLong)
        );
    }

    #[test]
    fn shared_subscriptions_are_mqtt_5_filters_with_a_group() {
        for rules in [MQTT5, IOT5] {
            assert_eq!(check_filter("$share/workers/jobs/#", rules), Ok(()));
            assert_eq!(check_filter("$share/g/+", rules), Ok(()));
            for bad in [
                "$share/",
                "$share/g",
                "$share/g/",
                "$share//jobs",
                "$share/g+/jobs",
                "$share/g#/jobs",
            ] {
                assert_eq!(
                    check_filter(bad, rules),
                    Err(TopicRefused::BadSharedFilter {
                        filter: bad.to_owned()
                    }),
                    "{bad}"
                );
            }
            assert!(matches!(
                check_filter("$share/g/a/#/b", rules),
                Err(TopicRefused::Filter(_))
            ));
        }
        for rules in [MQTT3, IOT3] {
            let e = check_filter("$share/workers/jobs/#", rules).unwrap_err();
            assert_eq!(
                e,
                TopicRefused::SharedNeedsMqtt5 {
                    filter: "$share/workers/jobs/#".into()
                }
            );
            assert!(e.to_string().contains("need MQTT 5"), "{e}");
        }
        assert_eq!(
            subscribed("$share/workers/jobs/+").unwrap(),
            Subscribed {
                group: Some("workers"),
                filter: "jobs/+"
            }
        );
        assert_eq!(
            subscribed("jobs/+").unwrap(),
            Subscribed {
                group: None,
                filter: "jobs/+"
            }
        );
        // `$share` is case-sensitive: another `$` filter is a plain one.
        assert_eq!(subscribed("$SHARE/g/x").unwrap().group, None);
    }

    #[test]
    fn iot_core_is_known_by_its_endpoint() {
        let v = MqttVersion::Mqtt5;
        assert_eq!(
            TopicRules::for_broker("abc123-ats.iot.eu-west-1.amazonaws.com", v),
            IOT5
        );
        assert_eq!(
            TopicRules::for_broker("abc-ats.iot.cn-north-1.AmazonAWS.com.cn.", v),
            IOT5
        );
        assert_eq!(TopicRules::for_broker("127.0.0.1", v), MQTT5);
        assert_eq!(
            TopicRules::for_broker("127.0.0.1", MqttVersion::Mqtt3),
            MQTT3
        );
        assert_eq!(
            TopicRules::for_broker("broker.amazonaws.com.example", v),
            MQTT5
        );
    }
}
