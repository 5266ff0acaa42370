//! Component versions (strict semver) and `VersionRequirement` ranges with npm's semantics, as
//! the nucleus reads them (`Requirement.buildNPM`; its own port of node-semver): `>=2.0.0
//! <3.0.0`, `^1.2`, `~1.2.3`, `1.x`, `*`, `1.2.3 - 2.3.4`, alternatives joined by `||`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

pub use semver::Version;
use semver::{BuildMetadata, Prerelease};

/// Greengrass caps a component version at 64 characters and each number at six digits.
const MAX_VERSION_LEN: usize = 64;
const MAX_VERSION_NUMBER: u64 = 999_999;

/// Parses a `ComponentVersion`: `major.minor.patch[-prerelease][+build]`.
pub fn parse_component_version(text: &str) -> Result<Version, String> {
    if text.len() > MAX_VERSION_LEN {
        return Err(format!(
            "{text:?} is longer than {MAX_VERSION_LEN} characters"
        ));
    }
    let version = Version::parse(text)
        .map_err(|e| format!("{text:?} is not a semantic version major.minor.patch ({e})"))?;
    if [version.major, version.minor, version.patch]
        .iter()
        .any(|n| *n > MAX_VERSION_NUMBER)
    {
        return Err(format!(
            "{text:?}: major, minor and patch may not exceed {MAX_VERSION_NUMBER}"
        ));
    }
    Ok(version)
}

/// Orders two versions by semver precedence: build metadata does not count.
fn precedence(a: &Version, b: &Version) -> Ordering {
    (a.major, a.minor, a.patch)
        .cmp(&(b.major, b.minor, b.patch))
        .then_with(|| a.pre.cmp(&b.pre))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// One desugared comparator; `None` is npm's "any version" (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator(Option<(Op, Version)>);

impl Comparator {
    const ANY: Self = Self(None);

    fn new(op: Op, major: u64, minor: u64, patch: u64, pre: Prerelease) -> Self {
        Self(Some((
            op,
            Version {
                major,
                minor,
                patch,
                pre,
                build: BuildMetadata::EMPTY,
            },
        )))
    }

    /// `<M.m.p-0`: below every prerelease of M.m.p, the bound npm uses for exclusive ranges.
    fn below(major: u64, minor: u64, patch: u64) -> Result<Self, String> {
        let zero = Prerelease::new("0").map_err(|e| e.to_string())?;
        Ok(Self::new(Op::Lt, major, minor, patch, zero))
    }

    fn test(&self, v: &Version) -> bool {
        let Some((op, bound)) = &self.0 else {
            return true;
        };
        let ord = precedence(v, bound);
        match op {
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Eq => ord == Ordering::Equal,
        }
    }
}

/// A dependency's `VersionRequirement`, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRequirement {
    raw: String,
    /// Alternatives (`||`), each a conjunction of comparators.
    alternatives: Vec<Vec<Comparator>>,
}

impl VersionRequirement {
    pub fn parse(text: &str) -> Result<Self, VersionRequirementError> {
        let fail = |reason: String| VersionRequirementError {
            input: text.to_owned(),
            reason,
        };
        let alternatives = text
            .split("||")
            .map(parse_range)
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        Ok(Self {
            raw: text.to_owned(),
            alternatives,
        })
    }

    /// `*`: every release.
    pub fn any() -> Self {
        Self {
            raw: "*".to_owned(),
            alternatives: vec![vec![Comparator::ANY]],
        }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether `version` is in the range. As in npm, a prerelease only satisfies a range that
    /// names a prerelease of the same `major.minor.patch` (`^1.2.3-beta.1` takes `1.2.3-beta.2`
    /// but not `1.2.4-alpha`).
    pub fn satisfies(&self, version: &Version) -> bool {
        self.alternatives.iter().any(|set| {
            if !set.iter().all(|c| c.test(version)) {
                return false;
            }
            if version.pre.is_empty() {
                return true;
            }
            set.iter().any(|c| {
                c.0.as_ref().is_some_and(|(_, bound)| {
                    !bound.pre.is_empty()
                        && (bound.major, bound.minor, bound.patch)
                            == (version.major, version.minor, version.patch)
                })
            })
        })
    }
}

impl fmt::Display for VersionRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for VersionRequirement {
    type Err = VersionRequirementError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("version requirement {input:?} is not valid: {reason}")]
pub struct VersionRequirementError {
    pub input: String,
    pub reason: String,
}

/// A version with parts left out or written `x`, `X` or `*` (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: Prerelease,
}

impl Partial {
    fn parse(text: &str) -> Result<Self, String> {
        let bare = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let (core, build) = match bare.split_once('+') {
            Some((core, build)) => (core, Some(build)),
            None => (bare, None),
        };
        if let Some(build) = build {
            if build.is_empty() {
                return Err(format!("{text:?} ends in an empty build"));
            }
            BuildMetadata::new(build).map_err(|e| format!("{text:?}: {e}"))?;
        }
        let (numbers, pre) = match core.split_once('-') {
            Some((numbers, pre)) => (numbers, Some(pre)),
            None => (core, None),
        };
        let mut parts = numbers.split('.');
        let mut next = || -> Result<Option<u64>, String> {
            match parts.next() {
                None => Ok(None),
                Some("x" | "X" | "*") => Ok(None),
                Some(n) => number(n).map(Some).map_err(|e| format!("{text:?}: {e}")),
            }
        };
        let (major, minor, patch) = (next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(format!("{text:?} has more than three numbers"));
        }
        // After a wildcard every later part is a wildcard too (`1.x.3` is `1.x`).
        let minor = major.and(minor);
        let patch = minor.and(patch);
        let pre = match pre {
            None => Prerelease::EMPTY,
            Some(_) if patch.is_none() => {
                return Err(format!(
                    "{text:?}: a prerelease needs a full major.minor.patch"
                ))
            }
            Some("") => return Err(format!("{text:?} ends in an empty prerelease")),
            Some(pre) => Prerelease::new(pre).map_err(|e| format!("{text:?}: {e}"))?,
        };
        Ok(Self {
            major,
            minor,
            patch,
            pre,
        })
    }
}

fn number(text: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a number"));
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(format!("{text:?} has a leading zero"));
    }
    text.parse().map_err(|_| format!("{text} is too large"))
}

fn bump(n: u64) -> Result<u64, String> {
    n.checked_add(1).ok_or_else(|| format!("{n} is too large"))
}

const OPERATORS: [&str; 8] = ["<=", ">=", "~>", "<", ">", "=", "~", "^"];

/// One range between `||`: a hyphen range, or comparators separated by spaces.
fn parse_range(text: &str) -> Result<Vec<Comparator>, String> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    if tokens.is_empty() {
        return Ok(vec![Comparator::ANY]);
    }
    if tokens.len() == 3 && tokens[1] == "-" {
        return hyphen(tokens[0], tokens[2]);
    }
    // `>= 1.2.3` is `>=1.2.3`: an operator standing alone takes the next token.
    let mut out = Vec::new();
    let mut pending: Option<&str> = None;
    for token in tokens {
        if OPERATORS.contains(&token) {
            if pending.is_some() {
                return Err(format!("{token:?} follows another operator"));
            }
            pending = Some(token);
            continue;
        }
        let joined = match pending.take() {
            Some(op) => format!("{op}{token}"),
            None => token.to_owned(),
        };
        out.extend(simple(&joined)?);
    }
    if let Some(op) = pending {
        return Err(format!("{op:?} is not followed by a version"));
    }
    Ok(out)
}

/// `A - B`: `>=A <=B`, where a partial B takes all of its last given part.
fn hyphen(from: &str, to: &str) -> Result<Vec<Comparator>, String> {
    let from = Partial::parse(from)?;
    let to = Partial::parse(to)?;
    let mut out = Vec::new();
    match from {
        Partial { major: None, .. } => {}
        Partial {
            major: Some(m),
            minor: None,
            ..
        } => out.push(Comparator::new(Op::Ge, m, 0, 0, Prerelease::EMPTY)),
        Partial {
            major: Some(m),
            minor: Some(n),
            patch: None,
            ..
        } => out.push(Comparator::new(Op::Ge, m, n, 0, Prerelease::EMPTY)),
        Partial {
            major: Some(m),
            minor: Some(n),
            patch: Some(p),
            pre,
        } => out.push(Comparator::new(Op::Ge, m, n, p, pre)),
    }
    match to {
        Partial { major: None, .. } => {}
        Partial {
            major: Some(m),
            minor: None,
            ..
        } => out.push(Comparator::below(bump(m)?, 0, 0)?),
        Partial {
            major: Some(m),
            minor: Some(n),
            patch: None,
            ..
        } => out.push(Comparator::below(m, bump(n)?, 0)?),
        Partial {
            major: Some(m),
            minor: Some(n),
            patch: Some(p),
            pre,
        } => out.push(Comparator::new(Op::Le, m, n, p, pre)),
    }
    if out.is_empty() {
        out.push(Comparator::ANY);
    }
    Ok(out)
}

/// One comparator as written (`^1.2`, `~1.2.3`, `>=1.x`, `1.2.3`, `*`), desugared as npm does.
fn simple(token: &str) -> Result<Vec<Comparator>, String> {
    let op = OPERATORS
        .iter()
        .find(|op| token.starts_with(**op))
        .copied()
        .unwrap_or("");
    let rest = &token[op.len()..];
    let v = Partial::parse(rest)?;
    match op {
        "^" => caret(v),
        "~" | "~>" => tilde(v),
        _ => x_range(op, v),
    }
}

/// `^M.m.p`: changes that do not modify the left-most non-zero part.
fn caret(v: Partial) -> Result<Vec<Comparator>, String> {
    let none = Prerelease::EMPTY;
    Ok(match v {
        Partial { major: None, .. } => vec![Comparator::ANY],
        Partial {
            major: Some(m),
            minor: None,
            ..
        } => vec![
            Comparator::new(Op::Ge, m, 0, 0, none),
            Comparator::below(bump(m)?, 0, 0)?,
        ],
        Partial {
            major: Some(0),
            minor: Some(n),
            patch: None,
            ..
        } => vec![
            Comparator::new(Op::Ge, 0, n, 0, none),
            Comparator::below(0, bump(n)?, 0)?,
        ],
        Partial {
            major: Some(m),
            minor: Some(n),
            patch: None,
            ..
        } => vec![
            Comparator::new(Op::Ge, m, n, 0, none),
            Comparator::below(bump(m)?, 0, 0)?,
        ],
        Partial {
            major: Some(m),
            minor: Some(n),
            patch: Some(p),
            pre,
        } => {
            let upper = match (m, n) {
                (0, 0) => Comparator::below(0, 0, bump(p)?)?,
                (0, n) => Comparator::below(0, bump(n)?, 0)?,
                (m, _) => Comparator::below(bump(m)?, 0, 0)?,
            };
            vec![Comparator::new(Op::Ge, m, n, p, pre), upper]
        }
    })
}

/// `~M.m.p`: patch-level changes when a minor version is given, else minor-level.
fn tilde(v: Partial) -> Result<Vec<Comparator>, String> {
    let none = Prerelease::EMPTY;
    Ok(match v {
        Partial { major: None, .. } => vec![Comparator::ANY],
        Partial {
            major: Some(m),
            minor: None,
            ..
        } => vec![
            Comparator::new(Op::Ge, m, 0, 0, none),
            Comparator::below(bump(m)?, 0, 0)?,
        ],
        Partial {
            major: Some(m),
            minor: Some(n),
            patch: None,
            ..
        } => vec![
            Comparator::new(Op::Ge, m, n, 0, none),
            Comparator::below(m, bump(n)?, 0)?,
        ],
        Partial {
            major: Some(m),
            minor: Some(n),
            patch: Some(p),
            pre,
        } => vec![
            Comparator::new(Op::Ge, m, n, p, pre),
            Comparator::below(m, bump(n)?, 0)?,
        ],
    })
}

/// A plain or compared version, with wildcards filled in as npm's `replaceXRange` does.
fn x_range(op: &str, v: Partial) -> Result<Vec<Comparator>, String> {
    let none = Prerelease::EMPTY;
    let Partial {
        major,
        minor,
        patch,
        pre,
    } = v;
    let Some(m) = major else {
        // `<*` and `>*` admit nothing; `*`, `>=*`, `<=*` everything.
        return Ok(vec![match op {
            "<" | ">" => Comparator::below(0, 0, 0)?,
            _ => Comparator::ANY,
        }]);
    };
    let Some(p) = patch else {
        let n = minor;
        return Ok(match op {
            "" | "=" => match n {
                None => vec![
                    Comparator::new(Op::Ge, m, 0, 0, none),
                    Comparator::below(bump(m)?, 0, 0)?,
                ],
                Some(n) => vec![
                    Comparator::new(Op::Ge, m, n, 0, none),
                    Comparator::below(m, bump(n)?, 0)?,
                ],
            },
            // `>1` is `>=2.0.0`, `>1.2` is `>=1.3.0`.
            ">" => match n {
                None => vec![Comparator::new(Op::Ge, bump(m)?, 0, 0, none)],
                Some(n) => vec![Comparator::new(Op::Ge, m, bump(n)?, 0, none)],
            },
            ">=" => vec![Comparator::new(Op::Ge, m, n.unwrap_or(0), 0, none)],
            "<" => vec![Comparator::below(m, n.unwrap_or(0), 0)?],
            // `<=1.2` takes every 1.2.x: `<1.3.0-0`.
            "<=" => match n {
                None => vec![Comparator::below(bump(m)?, 0, 0)?],
                Some(n) => vec![Comparator::below(m, bump(n)?, 0)?],
            },
            other => return Err(format!("{other:?} is not an operator")),
        });
    };
    let n = minor.unwrap_or(0);
    let op = match op {
        "" | "=" => Op::Eq,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        other => return Err(format!("{other:?} is not an operator")),
    };
    Ok(vec![Comparator::new(op, m, n, p, pre)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn sat(range: &str, version: &str) -> bool {
        VersionRequirement::parse(range)
            .unwrap_or_else(|e| panic!("{e}"))
            .satisfies(&v(version))
    }

    #[test]
    fn component_versions_are_strict_and_bounded() {
        assert!(parse_component_version("1.0.0").is_ok());
        assert!(parse_component_version("1.0.0-alpha+b.1").is_ok());
        assert!(parse_component_version("1.0").is_err());
        assert!(parse_component_version("01.0.0").is_err());
        assert!(parse_component_version("1000000.0.0").is_err());
        assert!(parse_component_version(&format!("1.0.0-{}", "a".repeat(60))).is_err());
    }

    #[test]
    fn npm_ranges_include() {
        for (range, version) in [
            (">=2.0.0 <3.0.0", "2.7.1"),
            ("^1.2", "1.9.0"),
            ("^1.2.3", "1.2.3"),
            ("^0.2.3", "0.2.9"),
            ("^0.0.3", "0.0.3"),
            ("~1.2.3", "1.2.9"),
            ("~1.2", "1.2.0"),
            ("~1", "1.9.9"),
            ("~>1.2", "1.2.4"),
            ("1.x", "1.4.2"),
            ("1.2.x", "1.2.7"),
            ("1", "1.0.0"),
            ("*", "9.9.9"),
            ("", "0.0.1"),
            ("x", "1.0.0"),
            ("=1.2.3", "1.2.3"),
            ("1.2.3", "1.2.3+build.5"),
            ("v1.2.3", "1.2.3"),
            (">= 1.2.3", "1.2.4"),
            ("<2", "1.9.9"),
            ("<=1.2", "1.2.99"),
            (">1.2", "1.3.0"),
            (">1", "2.0.0"),
            ("1.2.3 - 2.3.4", "2.3.4"),
            ("1.2 - 2.3", "2.3.9"),
            ("1 - 2", "2.99.0"),
            ("1.0.0 || 2.0.0", "2.0.0"),
            ("<1.0.0 || >=3.0.0", "3.1.0"),
            ("^1.2.3-beta.1", "1.2.3-beta.2"),
            (">=1.2.3-alpha <1.2.4", "1.2.3-alpha.7"),
            ("1.2.3-rc.1", "1.2.3-rc.1"),
        ] {
            assert!(sat(range, version), "{range} should include {version}");
        }
    }

    #[test]
    fn npm_ranges_exclude() {
        for (range, version) in [
            (">=2.0.0 <3.0.0", "3.0.0"),
            (">=2.0.0 <3.0.0", "1.9.9"),
            (">=2.0.0 <3.0.0", "3.0.0-alpha"),
            ("^1.2", "2.0.0"),
            ("^1.2", "1.1.9"),
            ("^0.2.3", "0.3.0"),
            ("^0.0.3", "0.0.4"),
            ("~1.2.3", "1.3.0"),
            ("~1.2.3", "1.2.2"),
            ("1.x", "2.0.0"),
            ("1.2.x", "1.3.0"),
            ("=1.2.3", "1.2.4"),
            ("<2", "2.0.0"),
            ("<=1.2", "1.3.0"),
            (">1.2", "1.2.9"),
            ("1.2.3 - 2.3.4", "2.3.5"),
            ("1.2 - 2.3", "2.4.0"),
            ("1.0.0 || 2.0.0", "1.5.0"),
            ("<*", "1.0.0"),
            // A prerelease needs a comparator naming a prerelease of its own major.minor.patch.
            ("^1.2.3-beta.1", "1.2.4-alpha"),
            ("^1.0.0", "1.5.0-beta"),
            ("*", "1.0.0-rc.1"),
            ("~1.2.3-beta.2", "1.2.3-beta.1"),
        ] {
            assert!(!sat(range, version), "{range} should exclude {version}");
        }
    }

    #[test]
    fn invalid_ranges_name_the_input() {
        for bad in [
            ">=",
            "^1.2.3.4",
            "1.2.3 - ",
            "01.2.3",
            "abc",
            ">= >= 1",
            "~1.x-beta",
            "1.2.3-",
        ] {
            let err = VersionRequirement::parse(bad).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains("is not valid"), "{err}");
        }
    }

    #[test]
    fn display_is_the_text_as_written() {
        let r = VersionRequirement::parse(">=2.0.0 <3.0.0").unwrap();
        assert_eq!(r.to_string(), ">=2.0.0 <3.0.0");
        assert_eq!(r.to_string().parse::<VersionRequirement>(), Ok(r));
        assert!(VersionRequirement::any().satisfies(&v("0.0.0")));
    }
}
