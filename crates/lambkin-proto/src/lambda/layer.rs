//! Lambda layers (`/2018-10-31/layers…`): names, version ARNs and the JSON shapes of
//! PublishLayerVersion, GetLayerVersion(ByArn), ListLayers, ListLayerVersions and
//! DeleteLayerVersion, and the rules on a function's `Layers`, with AWS's messages.

use serde::{Deserialize, Serialize};

/// A layer's name: 1–140 of `[A-Za-z0-9_-]`, as AWS's pattern allows. It becomes a directory
/// (`ROOT/layers/NAME`), and nothing in the pattern can name another one (no `/`, no `.`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct LayerName(String);

impl LayerName {
    pub const MAX_LEN: usize = 140;

    /// A name, or a layer's ARN (`arn:aws:lambda:REGION:ACCOUNT:layer:NAME`), as the API's
    /// `LayerName` path parameter takes either.
    pub fn parse(value: &str) -> Result<Self, LayerError> {
        let invalid = || LayerError::InvalidName(value.to_owned());
        let name = match value.strip_prefix("arn:") {
            Some(rest) => {
                let parts: Vec<&str> = rest.split(':').collect();
                match parts.as_slice() {
                    [partition, "lambda", region, account, "layer", name]
                        if is_word(partition) && is_word(region) && is_account(account) =>
                    {
                        *name
                    }
                    _ => return Err(invalid()),
                }
            }
            None => value,
        };
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(invalid())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LayerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LayerName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A layer version's number: 1 for the first, one more for each publish, never reused.
pub type LayerVersionNumber = u64;

/// `arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerVersionArn {
    pub region: String,
    pub account: String,
    pub name: LayerName,
    pub version: LayerVersionNumber,
}

impl LayerVersionArn {
    pub fn parse(value: &str) -> Result<Self, LayerError> {
        let invalid = || LayerError::InvalidVersionArn(value.to_owned());
        if value.len() > 140 {
            return Err(invalid());
        }
        let rest = value.strip_prefix("arn:").ok_or_else(invalid)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let [partition, "lambda", region, account, "layer", name, version] = parts.as_slice()
        else {
            return Err(invalid());
        };
        if !is_word(partition) || !is_word(region) || !is_account(account) {
            return Err(invalid());
        }
        let name = LayerName::parse(name).map_err(|_| invalid())?;
        let version = parse_version(version).ok_or_else(invalid)?;
        Ok(Self {
            region: (*region).to_owned(),
            account: (*account).to_owned(),
            name,
            version,
        })
    }

    /// The ARN of the layer (without its version).
    pub fn layer_arn(region: &str, account: &str, name: &LayerName) -> String {
        format!("arn:aws:lambda:{region}:{account}:layer:{name}")
    }

    pub fn to_arn(&self) -> String {
        format!(
            "{}:{}",
            Self::layer_arn(&self.region, &self.account, &self.name),
            self.version
        )
    }
}

/// A version number as the path gives it: digits only, at least 1.
pub fn parse_version(value: &str) -> Option<LayerVersionNumber> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|v| *v >= 1)
}

/// The most layers a function may use, as AWS allows.
pub const MAX_FUNCTION_LAYERS: usize = 5;

/// Checks a function's `Layers` as AWS does before looking any of them up: at most five, each
/// a version ARN, no layer twice. The order is kept: it is the order they are laid over `/opt`.
pub fn parse_function_layers(arns: &[String]) -> Result<Vec<LayerVersionArn>, LayerError> {
    if arns.len() > MAX_FUNCTION_LAYERS {
        return Err(LayerError::TooMany);
    }
    let parsed = arns
        .iter()
        .map(|a| LayerVersionArn::parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, a) in parsed.iter().enumerate() {
        if let Some(b) = parsed[..i].iter().find(|b| b.name == a.name) {
            return Err(LayerError::SameLayerTwice(b.to_arn(), a.to_arn()));
        }
    }
    Ok(parsed)
}

/// What a layer request got wrong, in AWS's words where AWS has them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    /// A `ValidationException` in AWS.
    #[error("1 validation error detected: Value '{0}' at 'layerName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{{12}}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+")]
    InvalidName(String),
    /// A `ValidationException` in AWS.
    #[error("1 validation error detected: Value '{0}' at 'layers' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{{12}}:layer:[a-zA-Z0-9-_]+:[0-9]+")]
    InvalidVersionArn(String),
    #[error("Cannot reference more than 5 layers.")]
    TooMany,
    #[error("Two different versions of the same layer are not allowed to be referenced in the same function. {0} and {1}")]
    SameLayerTwice(String, String),
}

/// `Content` of PublishLayerVersion.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LayerVersionContentInput {
    /// Base64 of the zip, as the SDKs send it.
    pub zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    pub s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    pub s3_key: Option<String>,
    #[serde(rename = "S3ObjectVersion")]
    pub s3_object_version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PublishLayerVersionRequest {
    pub content: LayerVersionContentInput,
    pub description: Option<String>,
    pub compatible_runtimes: Option<Vec<String>>,
    pub compatible_architectures: Option<Vec<String>>,
    pub license_info: Option<String>,
}

/// A layer version's `Content` as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionContentOutput {
    /// Where the content is on the device (`file://…`); AWS gives a download link.
    pub location: String,
    pub code_sha256: String,
    pub code_size: u64,
}

/// PublishLayerVersion's, GetLayerVersion's and GetLayerVersionByArn's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersion {
    pub content: LayerVersionContentOutput,
    pub layer_arn: String,
    pub layer_version_arn: String,
    pub description: String,
    pub created_date: String,
    pub version: LayerVersionNumber,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_info: Option<String>,
}

/// One version in ListLayerVersions and ListLayers (`LatestMatchingVersion`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionsListItem {
    pub layer_version_arn: String,
    pub version: LayerVersionNumber,
    pub description: String,
    pub created_date: String,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_info: Option<String>,
}

impl From<&LayerVersion> for LayerVersionsListItem {
    fn from(v: &LayerVersion) -> Self {
        Self {
            layer_version_arn: v.layer_version_arn.clone(),
            version: v.version,
            description: v.description.clone(),
            created_date: v.created_date.clone(),
            compatible_runtimes: v.compatible_runtimes.clone(),
            compatible_architectures: v.compatible_architectures.clone(),
            license_info: v.license_info.clone(),
        }
    }
}

/// One layer in ListLayers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayersListItem {
    pub layer_name: String,
    pub layer_arn: String,
    pub latest_matching_version: LayerVersionsListItem,
}

/// The filters of ListLayers and ListLayerVersions (query `CompatibleRuntime`,
/// `CompatibleArchitecture`): a version matches when it names the one asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerFilter {
    pub compatible_runtime: Option<String>,
    pub compatible_architecture: Option<String>,
}

impl LayerFilter {
    pub fn matches(&self, v: &LayerVersion) -> bool {
        self.compatible_runtime
            .as_ref()
            .is_none_or(|r| v.compatible_runtimes.contains(r))
            && self
                .compatible_architecture
                .as_ref()
                .is_none_or(|a| v.compatible_architectures.contains(a))
    }
}

/// A page of ListLayers or ListLayerVersions (query `Marker`, `MaxItems`): at most
/// `max_items` entries after `marker`, the last entry of the page before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub marker: Option<String>,
    pub max_items: usize,
}

impl Page {
    /// AWS's range for `MaxItems`, and its default.
    pub const MAX_ITEMS: usize = 50;

    pub fn parse(marker: Option<String>, max_items: Option<&str>) -> Result<Self, String> {
        let max_items = match max_items {
            None => Self::MAX_ITEMS,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=Self::MAX_ITEMS).contains(n))
                .ok_or_else(|| {
                    format!(
                        "1 validation error detected: Value '{v}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and {}",
                        Self::MAX_ITEMS
                    )
                })?,
        };
        Ok(Self {
            marker: marker.filter(|m| !m.is_empty()),
            max_items,
        })
    }

    /// The entries of this page of `all` (in listing order, each with its marker) and the
    /// marker of the next page, if there is one.
    pub fn take<T>(&self, all: Vec<(String, T)>) -> (Vec<T>, Option<String>) {
        let start = match &self.marker {
            Some(marker) => all
                .iter()
                .position(|(m, _)| m == marker)
                .map_or(all.len(), |i| i + 1),
            None => 0,
        };
        let rest = all.len().saturating_sub(start);
        let mut page: Vec<(String, T)> = all.into_iter().skip(start).take(self.max_items).collect();
        let next = (rest > self.max_items)
            .then(|| page.last().map(|(m, _)| m.clone()))
            .flatten();
        (page.drain(..).map(|(_, t)| t).collect(), next)
    }
}

/// A layer as a function's configuration lists it (`Layers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionLayer {
    pub arn: String,
    pub code_size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_words_or_layer_arns() {
        for good in ["my-layer", "a_b", "X", &"x".repeat(140)] {
            assert_eq!(LayerName::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(
            LayerName::parse("arn:aws:lambda:us-east-1:123456789012:layer:deps")
                .unwrap()
                .as_str(),
            "deps"
        );
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a.b",
            "a b",
            "a\0b",
            &"x".repeat(141),
            "arn:aws:lambda:us-east-1:123:layer:deps",
            "arn:aws:lambda:us-east-1:123456789012:layer:../x",
        ] {
            assert!(
                matches!(LayerName::parse(bad), Err(LayerError::InvalidName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn version_arns_round_trip() {
        let arn = "arn:aws:lambda:eu-west-1:000000000000:layer:deps:12";
        let parsed = LayerVersionArn::parse(arn).unwrap();
        assert_eq!(parsed.name.as_str(), "deps");
        assert_eq!(parsed.version, 12);
        assert_eq!(parsed.to_arn(), arn);
        for bad in [
            "arn:aws:lambda:eu-west-1:000000000000:layer:deps",
            "arn:aws:lambda:eu-west-1:000000000000:layer:deps:0",
            "arn:aws:lambda:eu-west-1:000000000000:layer:deps:x",
            "arn:aws:lambda:eu-west-1:000000000000:function:deps:1",
            "arn:aws:lambda:eu-west-1:000000000000:layer:a/b:1",
            "deps:1",
        ] {
            assert!(LayerVersionArn::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pages_follow_their_markers() {
        let all = |n: usize| (1..=n).map(|i| (i.to_string(), i)).collect::<Vec<_>>();
        let page = Page::parse(None, Some("2")).unwrap();
        assert_eq!(page.take(all(5)), (vec![1, 2], Some("2".into())));
        let page = Page::parse(Some("2".into()), Some("2")).unwrap();
        assert_eq!(page.take(all(5)), (vec![3, 4], Some("4".into())));
        let page = Page::parse(Some("4".into()), Some("2")).unwrap();
        assert_eq!(page.take(all(5)), (vec![5], None));
        let page = Page::parse(None, None).unwrap();
        assert_eq!(page.take(all(3)), (vec![1, 2, 3], None));
        assert!(Page::parse(None, Some("0")).is_err());
        assert!(Page::parse(None, Some("51")).is_err());
    }

    #[test]
    fn a_function_takes_five_layers_each_once() {
        let arn =
            |n: usize, v: u64| format!("arn:aws:lambda:us-east-1:000000000000:layer:l{n}:{v}");
        let five: Vec<String> = (0..5).map(|n| arn(n, 1)).collect();
        assert_eq!(parse_function_layers(&five).unwrap().len(), 5);
        let mut six = five.clone();
        six.push(arn(5, 1));
        assert_eq!(parse_function_layers(&six), Err(LayerError::TooMany));
        assert_eq!(
            LayerError::TooMany.to_string(),
            "Cannot reference more than 5 layers."
        );
        let twice = vec![arn(1, 1), arn(1, 2)];
        assert!(matches!(
            parse_function_layers(&twice),
            Err(LayerError::SameLayerTwice(..))
        ));
        assert!(matches!(
            parse_function_layers(&["nope".into()]),
            Err(LayerError::InvalidVersionArn(_))
        ));
    }
}
