//! Topics and subscription filters for local publish/subscribe, validated once at the edge
//! (`greengrass-reference.md` §4.5, `greengrass-ipc.md` §4.1), and the reference matcher
//! that the router's trie must agree with.
//!
//! Matching follows the Greengrass nucleus (its `SubscriptionTrie`), which is also how AWS IoT
//! Core matches:
//! - a topic is split into levels at every `/`; empty levels count (`a//b` has three levels,
//!   `a/` has two, the second empty);
//! - `+` matches exactly one level, empty or not;
//! - `#` matches one or more trailing levels, but **not** the parent: `a/#` matches `a/b` and
//!   `a/b/c`, not `a`. `#` alone matches every topic;
//! - topics starting with `$` are not special: `#` and `+` match them too.
//!
//! Where the nucleus differs, it is by accident of Java's `String.split`, which drops trailing
//! empty levels (so there `+` matches `foo/` and `foo/#` does not). Here every level counts.
//!
//! Validation is stricter than the nucleus in one place, on purpose: a filter whose `+` or `#`
//! is not a whole level (`a+/b`, `#/a`, `a/#/`) is refused. The nucleus accepts such filters,
//! treats the misplaced characters literally, and they never match anything, because a
//! published topic cannot contain them. A `*` in a filter is kept as a literal character, as
//! the nucleus does; it can never match either, since published topics cannot contain `*`.
//!
//! Authorization is not done here: a policy is checked against the text the client sent
//! ([`Topic::as_str`], [`Filter::as_str`]), before these types are parsed (the nucleus
//! authorizes first, then validates).

use std::fmt;
use std::sync::Arc;

/// The level separator.
const SEPARATOR: char = '/';
/// Matches exactly one level.
const SINGLE_LEVEL: &str = "+";
/// Matches one or more trailing levels.
const MULTI_LEVEL: &str = "#";
/// The longest topic or filter, in bytes: MQTT's longest string. The nucleus sets no limit
/// on local topics; this one keeps every local topic one an MQTT broker could carry, and a
/// hostile client from making every subscription's match walk megabytes.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// A concrete topic a message is published to: non-empty, no `+`, `#` or `*` (the nucleus
/// refuses all three in a publish topic). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

/// Why a publish topic was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("publish topic must not be empty")]
    Empty,
    #[error("publish topic {0:?} must not contain a wildcard ('+', '#' or '*')")]
    Wildcard(String),
    #[error("publish topic {0:?} must not contain the null character (U+0000)")]
    Nul(String),
    #[error("publish topic is {len} bytes, more than the {MAX_TOPIC_LEN} allowed")]
    TooLong { len: usize },
}

impl Topic {
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        if topic.is_empty() {
            return Err(TopicError::Empty);
        }
        if topic.len() > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong { len: topic.len() });
        }
        if topic.contains(['+', '#', '*']) {
            return Err(TopicError::Wildcard(topic.to_owned()));
        }
        if topic.contains('\0') {
            return Err(TopicError::Nul(topic.to_owned()));
        }
        Ok(Self(Arc::from(topic)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The topic's levels, in order; there is always at least one.
    pub fn levels(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.split(SEPARATOR)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A subscription filter: non-empty, `+` only as a whole level, `#` only as the whole last
/// level. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Filter {
    text: Arc<str>,
    wildcard: bool,
}

/// Why a subscription filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("subscription filter must not be empty")]
    Empty,
    #[error("subscription filter {0:?}: '+' must be a whole level")]
    SingleLevelWildcard(String),
    #[error("subscription filter {0:?}: '#' must be the whole last level")]
    MultiLevelWildcard(String),
    #[error("subscription filter {0:?} must not contain the null character (U+0000)")]
    Nul(String),
    #[error("subscription filter is {len} bytes, more than the {MAX_TOPIC_LEN} allowed")]
    TooLong { len: usize },
}

/// One level of a [`Filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterLevel<'a> {
    /// This exact level.
    Exact(&'a str),
    /// `+`: any one level.
    Single,
    /// `#`: one or more levels; always the last.
    Multi,
}

impl Filter {
    pub fn parse(filter: &str) -> Result<Self, FilterError> {
        if filter.is_empty() {
            return Err(FilterError::Empty);
        }
        if filter.len() > MAX_TOPIC_LEN {
            return Err(FilterError::TooLong { len: filter.len() });
        }
        if filter.contains('\0') {
            return Err(FilterError::Nul(filter.to_owned()));
        }
        let mut wildcard = false;
        let mut levels = filter.split(SEPARATOR).peekable();
        while let Some(level) = levels.next() {
            let last = levels.peek().is_none();
            if level == SINGLE_LEVEL || (level == MULTI_LEVEL && last) {
                wildcard = true;
            } else if level.contains('#') {
                return Err(FilterError::MultiLevelWildcard(filter.to_owned()));
            } else if level.contains('+') {
                return Err(FilterError::SingleLevelWildcard(filter.to_owned()));
            }
        }
        Ok(Self {
            text: Arc::from(filter),
            wildcard,
        })
    }

    /// The filter as the client wrote it: what an `accessControl` resource is checked against.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the filter uses `+` or `#` (it then matches more than one topic, and the
    /// default receive mode differs).
    pub fn has_wildcards(&self) -> bool {
        self.wildcard
    }

    /// The filter's levels, in order; there is always at least one.
    pub fn levels(&self) -> impl Iterator<Item = FilterLevel<'_>> + '_ {
        // `parse` placed the wildcards; a level equal to one of them is that wildcard.
        self.text.split(SEPARATOR).map(|level| match level {
            SINGLE_LEVEL => FilterLevel::Single,
            MULTI_LEVEL => FilterLevel::Multi,
            exact => FilterLevel::Exact(exact),
        })
    }

    /// Whether an MQTT broker sends `topic` to a subscription with this filter (MQTT 5
    /// §4.7): as [`matches`](Self::matches), except that `a/#` also matches `a`, and a filter
    /// starting with a wildcard does not match a topic starting with `$`.
    pub fn matches_mqtt(&self, topic: &str) -> bool {
        if topic.starts_with('$')
            && matches!(
                self.levels().next(),
                Some(FilterLevel::Single | FilterLevel::Multi)
            )
        {
            return false;
        }
        if let Some(parent) = self.text.strip_suffix("/#") {
            if topic == parent {
                return true;
            }
        }
        self.matches(topic)
    }

    /// Whether `topic`, a concrete topic (no wildcards), matches the filter. A plain walk over
    /// the levels: the definition the router's trie is tested against, and the way to check
    /// one filter alone.
    pub fn matches(&self, topic: &str) -> bool {
        let mut topic = topic.split(SEPARATOR);
        for level in self.levels() {
            match level {
                FilterLevel::Multi => return topic.next().is_some(),
                FilterLevel::Single => {
                    if topic.next().is_none() {
                        return false;
                    }
                }
                FilterLevel::Exact(exact) => {
                    if topic.next() != Some(exact) {
                        return false;
                    }
                }
            }
        }
        topic.next().is_none()
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &str) -> Filter {
        Filter::parse(text).unwrap()
    }

    #[test]
    fn publish_topics_are_refused_as_the_nucleus_refuses_them() {
        assert_eq!(Topic::parse(""), Err(TopicError::Empty));
        for bad in ["+", "a/+", "#", "a/#", "a/b#", "*", "sensors/*", "a+b"] {
            assert_eq!(
                Topic::parse(bad),
                Err(TopicError::Wildcard(bad.to_owned())),
                "{bad}"
            );
        }
        for good in ["a", "a/b", "/", "a//b", "a/", "$aws/things/x", "a b/ü"] {
            assert_eq!(Topic::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn nul_and_overlong_topics_and_filters_are_refused() {
        assert_eq!(
            Topic::parse("a/\0"),
            Err(TopicError::Nul("a/\0".to_owned()))
        );
        assert_eq!(
            Filter::parse("a/\0/#"),
            Err(FilterError::Nul("a/\0/#".to_owned()))
        );
        let longest = "a".repeat(MAX_TOPIC_LEN);
        assert!(Topic::parse(&longest).is_ok());
        assert!(Filter::parse(&longest).is_ok());
        let over = "a".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(
            Topic::parse(&over),
            Err(TopicError::TooLong {
                len: MAX_TOPIC_LEN + 1
            })
        );
        assert_eq!(
            Filter::parse(&over),
            Err(FilterError::TooLong {
                len: MAX_TOPIC_LEN + 1
            })
        );
    }

    #[test]
    fn mqtt_matching_includes_the_parent_and_spares_dollar_topics() {
        assert!(filter("a/#").matches_mqtt("a"));
        assert!(!filter("a/#").matches("a"));
        assert!(filter("a/#").matches_mqtt("a/b/c"));
        assert!(!filter("a/#").matches_mqtt("ab"));
        assert!(filter("#").matches_mqtt("a/b"));
        assert!(!filter("#").matches_mqtt("$aws/things/t"));
        assert!(!filter("+/things/t").matches_mqtt("$aws/things/t"));
        assert!(filter("$aws/#").matches_mqtt("$aws/things/t"));
        assert!(filter("$aws/#").matches_mqtt("$aws"));
    }

    #[test]
    fn topic_errors_name_the_topic() {
        let e = Topic::parse("a/#").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"publish topic "a/#" must not contain a wildcard ('+', '#' or '*')"#
        );
    }

    #[test]
    fn filters_take_wildcards_only_as_whole_levels() {
        assert_eq!(Filter::parse(""), Err(FilterError::Empty));
        for bad in ["a+", "a/b+/c", "+a", "a/++"] {
            assert_eq!(
                Filter::parse(bad),
                Err(FilterError::SingleLevelWildcard(bad.to_owned())),
                "{bad}"
            );
        }
        for bad in ["#/a", "a/#/b", "a/#/", "a#", "a/b#", "##", "+/#a"] {
            assert_eq!(
                Filter::parse(bad),
                Err(FilterError::MultiLevelWildcard(bad.to_owned())),
                "{bad}"
            );
        }
        for good in [
            "a", "+", "#", "a/+/b", "a/#", "+/+/#", "a//b", "/", "a/*", "$aws/#",
        ] {
            assert_eq!(filter(good).as_str(), good);
        }
    }

    #[test]
    fn wildcards_are_noticed() {
        for (text, wildcard) in [
            ("a/b", false),
            ("a/*", false),
            ("+", true),
            ("a/+/b", true),
            ("#", true),
            ("a/#", true),
        ] {
            assert_eq!(filter(text).has_wildcards(), wildcard, "{text}");
        }
    }

    #[test]
    fn levels_are_split_at_every_separator() {
        let f = filter("a//+/#");
        assert_eq!(
            f.levels().collect::<Vec<_>>(),
            [
                FilterLevel::Exact("a"),
                FilterLevel::Exact(""),
                FilterLevel::Single,
                FilterLevel::Multi
            ]
        );
        let t = Topic::parse("a//b/").unwrap();
        assert_eq!(t.levels().collect::<Vec<_>>(), ["a", "", "b", ""]);
    }

    /// The nucleus's own `SubscriptionTrie` cases, where its levels are exact.
    #[test]
    fn matching_follows_the_nucleus() {
        let matching: &[(&str, &[&str])] = &[
            ("foo", &["foo"]),
            ("foo/bar", &["foo/bar"]),
            (
                "#",
                &["foo", "foo/bar", "foo/bar/baz", "$foo/bar", "/", "foo/"],
            ),
            ("foo/#", &["foo/bar", "foo/bar/baz", "foo/"]),
            ("+", &["foo", "$foo"]),
            ("foo/+/baz", &["foo/bar/baz", "foo//baz"]),
            ("foo/+/baz/#", &["foo//baz/bar", "foo/bar/baz/bat"]),
            ("+/+", &["/", "a/b", "$aws/x"]),
            ("foo/+", &["foo/"]),
        ];
        for (f, topics) in matching {
            for t in *topics {
                assert!(filter(f).matches(t), "{f} should match {t}");
            }
        }
        let not_matching: &[(&str, &[&str])] = &[
            ("foo", &["fo", "foo/bar", "abc", "foo/"]),
            ("foo/bar", &["foo", "foo/bar/baz", "fo/bar"]),
            // `#` does not match the parent level.
            ("foo/#", &["foo", "fo/bar"]),
            ("+", &["/foo", "foo/bar", "foo/"]),
            ("foo/+/baz", &["foo", "foo/baz", "foo/bar/bat/baz"]),
            ("foo/+", &["foo", "foo/a/b"]),
            ("a/*", &["a/b", "a/c/d"]),
        ];
        for (f, topics) in not_matching {
            for t in *topics {
                assert!(!filter(f).matches(t), "{f} should not match {t}");
            }
        }
    }
}
