//! The raw recipe document: JSON or YAML read into one tree that keeps every key as written,
//! in order, duplicates included, so the typed layer can match schema keys case-insensitively
//! (as the Java nucleus's Jackson mapper does) and name each problem by its path.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One node of a recipe as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Doc {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Seq(Vec<Doc>),
    /// Entries in document order; keys of any scalar type are kept as their text.
    Map(Vec<(String, Doc)>),
}

impl Doc {
    pub(crate) fn parse_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    pub(crate) fn parse_yaml(text: &str) -> Result<Self, String> {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// How the node reads in a message: "a string", "a list", …
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Number(_) => "a number",
            Self::String(_) => "a string",
            Self::Seq(_) => "a list",
            Self::Map(_) => "an object",
        }
    }

    /// The text of a scalar, as Jackson coerces a scalar into a `String` field.
    pub(crate) fn scalar_text(&self) -> Option<String> {
        match self {
            Self::String(s) => Some(s.clone()),
            Self::Number(n) => Some(n.to_string()),
            Self::Bool(b) => Some(b.to_string()),
            Self::Null | Self::Seq(_) | Self::Map(_) => None,
        }
    }

    /// The node as a JSON value (for free-form parts such as `DefaultConfiguration`). A key
    /// given twice keeps its last value; the typed layer reports the duplicate first.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Number(n) => Value::Number(n.clone()),
            Self::String(s) => Value::String(s.clone()),
            Self::Seq(items) => Value::Array(items.iter().map(Doc::to_json).collect()),
            Self::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a recipe value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Doc, E> {
        Ok(Doc::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Doc, E> {
        Ok(Doc::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Doc, E> {
        Ok(Doc::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Doc, E> {
        serde_json::Number::from_f64(v)
            .map(Doc::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a finite number")))
    }

    fn visit_str<E>(self, v: &str) -> Result<Doc, E> {
        Ok(Doc::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Doc, E> {
        Ok(Doc::String(v))
    }

    fn visit_unit<E>(self) -> Result<Doc, E> {
        Ok(Doc::Null)
    }

    fn visit_none<E>(self) -> Result<Doc, E> {
        Ok(Doc::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Doc, D::Error> {
        Doc::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Doc::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Doc>()? {
            // YAML allows `0:` or `true:` as keys; Jackson reads them as their text.
            let key = match key {
                Doc::Null => "null".to_owned(),
                other => other.scalar_text().ok_or_else(|| {
                    de::Error::custom(format!("a key must be a scalar, not {}", other.kind()))
                })?,
            };
            entries.push((key, map.next_value()?));
        }
        Ok(Doc::Map(entries))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Doc, A::Error> {
        Err(de::Error::custom("YAML tags are not supported in a recipe"))
    }
}

/// A problem with a recipe, named by where it is: `Manifests[1].Artifacts[0].Unarchive`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    /// The key path, schema keys spelled as the reference spells them; empty for the whole
    /// document.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Problems and warnings gathered over one pass, so every problem is named at once.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) problems: Vec<Problem>,
    pub(crate) warnings: Vec<Problem>,
}

impl Report {
    pub(crate) fn error(&mut self, path: &str, message: impl Into<String>) {
        push_unique(&mut self.problems, path, message.into());
    }

    pub(crate) fn warn(&mut self, path: &str, message: impl Into<String>) {
        push_unique(&mut self.warnings, path, message.into());
    }
}

/// The global lifecycle is read once per manifest that uses it; report each problem once.
fn push_unique(list: &mut Vec<Problem>, path: &str, message: String) {
    let problem = Problem {
        path: path.to_owned(),
        message,
    };
    if !list.contains(&problem) {
        list.push(problem);
    }
}

/// `parent.Key` for a key of the recipe schema.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent.key`, or `parent["key"]` when the user's key is not a plain identifier (component
/// names hold dots).
pub(crate) fn join_user(parent: &str, key: &str) -> String {
    let mut chars = key.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        join(parent, key)
    } else {
        format!("{parent}[{key:?}]")
    }
}

pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// An object of the recipe schema, its keys matched case-insensitively against `fields`.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    fields: &'static [&'static str],
    values: Vec<Option<&'a Doc>>,
    path: String,
}

impl<'a> Fields<'a> {
    /// Reads `doc` as an object with the given schema keys. Unknown keys are ignored with a
    /// warning, as the nucleus parses recipes with `FAIL_ON_UNKNOWN_PROPERTIES` off; a key
    /// given twice (in any case) is an error. `None` (after reporting) when `doc` is no object.
    pub(crate) fn read(
        doc: &'a Doc,
        path: &str,
        fields: &'static [&'static str],
        report: &mut Report,
    ) -> Option<Self> {
        let Doc::Map(entries) = doc else {
            report.error(path, format!("must be an object, got {}", doc.kind()));
            return None;
        };
        let mut values: Vec<Option<&'a Doc>> = vec![None; fields.len()];
        let mut spelled: Vec<Option<&'a str>> = vec![None; fields.len()];
        for (key, value) in entries {
            match fields.iter().position(|f| f.eq_ignore_ascii_case(key)) {
                Some(i) => {
                    if let Some(first) = spelled[i] {
                        report.error(
                            &join(path, fields[i]),
                            format!("given more than once (as {first:?} and {key:?})"),
                        );
                    }
                    spelled[i] = Some(key);
                    values[i] = Some(value);
                }
                None => report.warn(&join_user(path, key), "unknown key, ignored"),
            }
        }
        Some(Self {
            fields,
            values,
            path: path.to_owned(),
        })
    }

    /// The value of a schema key; an explicit `null` counts as absent, as in the nucleus.
    pub(crate) fn get(&self, field: &str) -> Option<&'a Doc> {
        let i = self.fields.iter().position(|f| *f == field)?;
        self.values[i].filter(|d| !d.is_null())
    }

    /// The path of a schema key of this object.
    pub(crate) fn path(&self, field: &str) -> String {
        join(&self.path, field)
    }
}

/// The entries of a user-defined map (`Setenv`, `ComponentDependencies`, …): keys verbatim,
/// an exact duplicate is an error.
pub(crate) fn user_map<'a>(
    doc: &'a Doc,
    path: &str,
    report: &mut Report,
) -> Option<Vec<(&'a str, &'a Doc)>> {
    let Doc::Map(entries) = doc else {
        report.error(path, format!("must be an object, got {}", doc.kind()));
        return None;
    };
    let mut out: Vec<(&'a str, &'a Doc)> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        if out.iter().any(|(k, _)| *k == key.as_str()) {
            report.error(&join_user(path, key), "given more than once");
            continue;
        }
        out.push((key.as_str(), value));
    }
    Some(out)
}

/// A string field; numbers and booleans are read as their text, as Jackson does.
pub(crate) fn text(doc: &Doc, path: &str, report: &mut Report) -> Option<String> {
    let text = doc.scalar_text();
    if text.is_none() {
        report.error(path, format!("must be a string, got {}", doc.kind()));
    }
    text
}

/// A field that must be one of a few names, matched case-insensitively as the nucleus's
/// `ACCEPT_CASE_INSENSITIVE_ENUMS` does.
pub(crate) fn one_of<T: Copy>(
    doc: &Doc,
    path: &str,
    options: &[(&str, T)],
    report: &mut Report,
) -> Option<T> {
    let given = text(doc, path, report)?;
    let found = options
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(given.trim()));
    if found.is_none() {
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        report.error(
            path,
            format!("{given:?} is not one of {}", names.join(", ")),
        );
    }
    found.map(|(_, value)| *value)
}

/// A whole number of seconds or similar: an integer, a float with no fraction (`3.0`, as
/// configuration arrives on devices), or a string of digits.
pub(crate) fn whole_number(doc: &Doc, path: &str, report: &mut Report) -> Option<u64> {
    let value = match doc {
        Doc::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u32::MAX as f64)
                .map(|f| f as u64)
        }),
        Doc::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    if value.is_none() {
        let shown = doc.scalar_text().unwrap_or_else(|| doc.kind().to_owned());
        report.error(path, format!("{shown} is not a whole number"));
    }
    value
}

/// `true`/`false`, also written as a string (the schema allows `"true"`).
pub(crate) fn boolean(doc: &Doc, path: &str, report: &mut Report) -> Option<bool> {
    let value = match doc {
        Doc::Bool(b) => Some(*b),
        Doc::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Doc::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    };
    if value.is_none() {
        let shown = doc.scalar_text().unwrap_or_else(|| doc.kind().to_owned());
        report.error(path, format!("{shown:?} is not true or false"));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_duplicates_and_scalar_keys() {
        let doc = Doc::parse_yaml("b: 1\na: 2\nb: 3\n0: x\ntrue: y\n").unwrap();
        let Doc::Map(entries) = doc else {
            panic!("map expected")
        };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "b", "0", "true"]);
        let doc = Doc::parse_json(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        let Doc::Map(entries) = doc else {
            panic!("map expected")
        };
        assert_eq!(entries.len(), 3);
    }

    #[test]
    fn yaml_and_json_numbers_agree() {
        let y = Doc::parse_yaml("a: 16384\nb: 3.0\nc: -1\n").unwrap();
        let j = Doc::parse_json(r#"{"a":16384,"b":3.0,"c":-1}"#).unwrap();
        assert_eq!(y, j);
        assert!(Doc::parse_yaml("a: .nan").is_err());
        assert!(Doc::parse_yaml("a: !Ref x").is_err());
    }

    #[test]
    fn schema_keys_match_in_any_case() {
        let doc = Doc::parse_json(r#"{"COMPONENTNAME":"a","extra":1}"#).unwrap();
        let mut report = Report::default();
        let fields = Fields::read(&doc, "", &["ComponentName"], &mut report).unwrap();
        assert_eq!(fields.get("ComponentName"), Some(&Doc::String("a".into())));
        assert!(report.problems.is_empty());
        assert_eq!(
            report.warnings[0].to_string(),
            "extra: unknown key, ignored"
        );

        let doc = Doc::parse_json(r#"{"ComponentName":"a","componentname":"b"}"#).unwrap();
        let mut report = Report::default();
        Fields::read(&doc, "", &["ComponentName"], &mut report);
        assert_eq!(
            report.problems[0].to_string(),
            r#"ComponentName: given more than once (as "ComponentName" and "componentname")"#
        );
    }

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        assert_eq!(join_user("Setenv", "MY_VAR"), "Setenv.MY_VAR");
        assert_eq!(
            join_user("ComponentDependencies", "aws.greengrass.Nucleus"),
            r#"ComponentDependencies["aws.greengrass.Nucleus"]"#
        );
        assert_eq!(index("Manifests", 2), "Manifests[2]");
    }

    #[test]
    fn numbers_may_arrive_as_floats_or_strings() {
        let mut report = Report::default();
        let n = |s: &str| Doc::parse_json(s).unwrap();
        assert_eq!(whole_number(&n("3"), "T", &mut report), Some(3));
        assert_eq!(whole_number(&n("3.0"), "T", &mut report), Some(3));
        assert_eq!(whole_number(&n("\"120\""), "T", &mut report), Some(120));
        assert!(report.problems.is_empty());
        assert_eq!(whole_number(&n("2.5"), "T", &mut report), None);
        assert_eq!(whole_number(&n("-1"), "T", &mut report), None);
        assert_eq!(report.problems.len(), 2);
        assert_eq!(
            report.problems[0].to_string(),
            "T: 2.5 is not a whole number"
        );
    }
}
