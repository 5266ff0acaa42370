//! Platform selection (§2.1): each manifest's `Platform` maps attribute names to templates, and
//! the first manifest whose every template matches the device wins, as the nucleus's
//! `PlatformHelper.findBestMatch` does.
//!
//! A template is `*` (matches anything, absence included), `/regex/` (the whole value must
//! match), or a value compared exactly; `all` and `any` are wildcards for `os` and
//! `architecture`. Attribute names are kept as written and compared exactly, as the nucleus
//! keeps `Platform` as a plain map: `OS: linux` asks for an attribute named `OS`.

use std::collections::BTreeMap;
use std::fmt;

use super::document::{join_user, user_map, Doc, Report};

/// One attribute template of a manifest's `Platform`.
#[derive(Debug, Clone)]
pub enum PlatformTemplate {
    /// `*`, `null`, or `all`/`any` for `os` and `architecture`.
    Any,
    /// A value starting with a letter or digit, compared exactly.
    Exact(String),
    /// `/regex/`, which must match the whole value.
    Pattern(PlatformPattern),
    /// Any other value starting with a symbol: reserved by Greengrass, matches nothing.
    Reserved(String),
}

impl PartialEq for PlatformTemplate {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Any, Self::Any) => true,
            (Self::Exact(a), Self::Exact(b)) | (Self::Reserved(a), Self::Reserved(b)) => a == b,
            (Self::Pattern(a), Self::Pattern(b)) => a.source == b.source,
            _ => false,
        }
    }
}

impl Eq for PlatformTemplate {}

/// A compiled `/regex/` template; `source` is the text between the slashes.
#[derive(Debug, Clone)]
pub struct PlatformPattern {
    pub source: String,
    regex: regex_lite::Regex,
}

impl PlatformTemplate {
    /// Reads a template as written for attribute `name`.
    pub fn parse(name: &str, text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Self::Any);
        }
        if (name == "os" || name == "architecture") && (text == "all" || text == "any") {
            return Ok(Self::Any);
        }
        if text.len() >= 2 && text.starts_with('/') && text.ends_with('/') {
            let source = &text[1..text.len() - 1];
            // Java's `String.matches`: the whole value.
            let regex = regex_lite::Regex::new(&format!("^(?:{source})$")).map_err(|e| {
                format!("{text:?} is not a regular expression this host supports: {e}")
            })?;
            return Ok(Self::Pattern(PlatformPattern {
                source: source.to_owned(),
                regex,
            }));
        }
        if text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            Ok(Self::Exact(text.to_owned()))
        } else {
            Ok(Self::Reserved(text.to_owned()))
        }
    }

    /// Whether the device's value (`None`: the device has no such attribute) matches.
    pub fn matches(&self, value: Option<&str>) -> bool {
        if let Self::Any = self {
            return true;
        }
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return false;
        };
        match self {
            Self::Any => true,
            Self::Exact(want) => want == value,
            Self::Pattern(p) => p.regex.is_match(value),
            Self::Reserved(_) => false,
        }
    }
}

impl fmt::Display for PlatformTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(s) | Self::Reserved(s) => f.write_str(s),
            Self::Pattern(p) => write!(f, "/{}/", p.source),
        }
    }
}

/// A manifest's `Platform`: attribute name → template. Empty matches every device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlatformRequirement {
    pub attributes: BTreeMap<String, PlatformTemplate>,
}

impl PlatformRequirement {
    pub fn matches(&self, platform: &PlatformInfo) -> bool {
        self.attributes
            .iter()
            .all(|(name, template)| template.matches(platform.get(name)))
    }
}

impl fmt::Display for PlatformRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.attributes.is_empty() {
            return f.write_str("any platform");
        }
        let parts: Vec<String> = self
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// The keys Greengrass detects on a device (§2.1).
const WELL_KNOWN: [&str; 3] = ["os", "architecture", "architecture.detail"];

pub(crate) fn parse_platform(doc: &Doc, path: &str, report: &mut Report) -> PlatformRequirement {
    let mut attributes = BTreeMap::new();
    for (name, value) in user_map(doc, path, report).unwrap_or_default() {
        let at = join_user(path, name);
        if let Some(known) = WELL_KNOWN
            .iter()
            .find(|k| k.eq_ignore_ascii_case(name) && **k != name)
        {
            report.warn(
                &at,
                format!("attribute names are matched as written; the device's is {known:?}"),
            );
        }
        let template = match value {
            Doc::Null => Ok(PlatformTemplate::Any),
            Doc::Seq(_) | Doc::Map(_) => Err(format!("must be a string, got {}", value.kind())),
            scalar => {
                let text = scalar.scalar_text().unwrap_or_default();
                PlatformTemplate::parse(name, &text)
            }
        };
        match template {
            Ok(PlatformTemplate::Reserved(text)) => {
                report.warn(
                    &at,
                    format!(
                        "{text:?} starts with a symbol Greengrass reserves; it matches no device"
                    ),
                );
                attributes.insert(name.to_owned(), PlatformTemplate::Reserved(text));
            }
            Ok(template) => {
                attributes.insert(name.to_owned(), template);
            }
            Err(e) => report.error(&at, e),
        }
    }
    PlatformRequirement { attributes }
}

/// What the device is: `os`, `architecture`, and any other attribute (`architecture.detail`,
/// keys from the nucleus's `platformOverride`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformInfo {
    /// `linux`, `windows`, `darwin`.
    pub os: String,
    /// `amd64`, `x86`, `arm`, `aarch64`.
    pub architecture: String,
    /// Further attributes by name; one named `os` or `architecture` overrides the fields.
    pub extra: BTreeMap<String, String>,
}

impl PlatformInfo {
    pub fn new(os: impl Into<String>, architecture: impl Into<String>) -> Self {
        Self {
            os: os.into(),
            architecture: architecture.into(),
            extra: BTreeMap::new(),
        }
    }

    /// Adds an attribute such as `architecture.detail`.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }

    /// The platform this binary was built for, named as the nucleus names it.
    pub fn current() -> Self {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "x86",
            "aarch64" => "aarch64",
            "arm" => "arm",
            other => other,
        };
        Self::new(os, architecture)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        if let Some(value) = self.extra.get(name) {
            return Some(value);
        }
        match name {
            "os" => Some(&self.os),
            "architecture" => Some(&self.architecture),
            _ => None,
        }
    }
}

impl fmt::Display for PlatformInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "os={}, architecture={}", self.os, self.architecture)?;
        for (k, v) in &self.extra {
            write!(f, ", {k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, text: &str) -> PlatformTemplate {
        PlatformTemplate::parse(name, text).unwrap()
    }

    #[test]
    fn templates_match_as_the_nucleus_does() {
        assert!(t("os", "*").matches(None));
        assert!(t("os", "all").matches(Some("linux")));
        assert!(t("os", "any").matches(Some("windows")));
        assert!(
            !t("flavor", "all").matches(Some("x")),
            "all is only a wildcard for os/arch"
        );
        assert!(t("os", "linux").matches(Some("linux")));
        assert!(!t("os", "linux").matches(Some("Linux")));
        assert!(!t("os", "linux").matches(None));
        assert!(t("architecture", "/aarch64|arm.*/").matches(Some("armv7l")));
        assert!(
            !t("architecture", "/arm/").matches(Some("armv7l")),
            "whole value"
        );
        assert!(
            !t("architecture", "/.*/").matches(None),
            "a regex needs a value"
        );
        assert!(
            !t("architecture", "/.*/").matches(Some("")),
            "an empty value is none"
        );
        assert!(!t("os", "-linux").matches(Some("-linux")), "reserved");
        assert!(PlatformTemplate::parse("os", "/(?<=x)y/").is_err());
    }

    #[test]
    fn device_attributes_and_overrides() {
        let p = PlatformInfo::new("linux", "arm").with("architecture.detail", "armv7l");
        assert_eq!(p.get("os"), Some("linux"));
        assert_eq!(p.get("architecture.detail"), Some("armv7l"));
        assert_eq!(p.get("flavor"), None);
        let p = p.with("os", "custom");
        assert_eq!(p.get("os"), Some("custom"));
        assert!(!PlatformInfo::current().os.is_empty());
    }
}
