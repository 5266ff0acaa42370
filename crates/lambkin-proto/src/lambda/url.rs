//! Function URLs: the configuration (`AuthType`, `Cors`, `InvokeMode`) as the management API
//! takes and returns it, CORS answers, the payload format 2.0 event a request becomes, and how
//! a function's answer becomes an HTTP response (AWS's reading of a buffered result, or the
//! `application/vnd.awslambda.http-integration-response` prelude of a stream).

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// The management API's path prefix for URL configurations.
pub const API_VERSION: &str = "2021-10-31";
/// The path form of a URL on the API listener: `/lambda-url/URLID/...`.
pub const PATH_PREFIX: &str = "lambda-url";
/// Largest request body a URL takes (as Lambda: 6 MB).
pub const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;
/// The most a streamed answer's prelude may take before its delimiter.
pub const MAX_PRELUDE_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthType {
    #[serde(rename = "AWS_IAM")]
    AwsIam,
    #[serde(rename = "NONE")]
    None,
}

impl AuthType {
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        match value {
            "AWS_IAM" => Ok(Self::AwsIam),
            "NONE" => Ok(Self::None),
            other => Err(enum_error(other, "authType", "[NONE, AWS_IAM]")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvokeMode {
    #[serde(rename = "BUFFERED")]
    Buffered,
    #[serde(rename = "RESPONSE_STREAM")]
    ResponseStream,
}

impl InvokeMode {
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        match value {
            "BUFFERED" => Ok(Self::Buffered),
            "RESPONSE_STREAM" => Ok(Self::ResponseStream),
            other => Err(enum_error(
                other,
                "invokeMode",
                "[BUFFERED, RESPONSE_STREAM]",
            )),
        }
    }
}

fn enum_error(value: &str, field: &str, set: &str) -> ApiError {
    ApiError::Validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: {set}"
    ))
}

/// A URL's CORS settings, as AWS names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Cors {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
}

/// The methods a URL's `AllowMethods` may name.
const METHODS: [&str; 8] = [
    "GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "*",
];
/// Lambda's limits on `Cors`: 100 items a list, `MaxAge` at most a day.
const MAX_CORS_ITEMS: usize = 100;
const MAX_CORS_MAX_AGE: u32 = 86_400;

impl Cors {
    /// Every problem at once, naming the bad value.
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut problems = Vec::new();
        let lists = [
            ("AllowHeaders", &self.allow_headers),
            ("AllowMethods", &self.allow_methods),
            ("AllowOrigins", &self.allow_origins),
            ("ExposeHeaders", &self.expose_headers),
        ];
        for (name, list) in lists {
            if list.as_ref().is_some_and(|l| l.len() > MAX_CORS_ITEMS) {
                problems.push(format!(
                    "Cors.{name} holds more than {MAX_CORS_ITEMS} items"
                ));
            }
        }
        for method in self.allow_methods.iter().flatten() {
            if !METHODS.contains(&method.to_ascii_uppercase().as_str()) {
                problems.push(format!(
                    "Cors.AllowMethods: {method:?} is not one of {}",
                    METHODS.join(", ")
                ));
            }
        }
        for origin in self.allow_origins.iter().flatten() {
            if !valid_origin(origin) {
                problems.push(format!(
                    "Cors.AllowOrigins: {origin:?} is not \"*\" or an origin such as https://example.com"
                ));
            }
        }
        for (name, list) in [
            ("AllowHeaders", &self.allow_headers),
            ("ExposeHeaders", &self.expose_headers),
        ] {
            for header in list.iter().flatten() {
                if header != "*" && http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    problems.push(format!("Cors.{name}: {header:?} is not a header name"));
                }
            }
        }
        if let Some(age) = self.max_age.filter(|a| *a > MAX_CORS_MAX_AGE) {
            problems.push(format!(
                "Cors.MaxAge: {age} is more than {MAX_CORS_MAX_AGE} seconds"
            ));
        }
        let any_origin = self.allow_origins.iter().flatten().any(|o| o == "*");
        if self.allow_credentials == Some(true) && any_origin {
            problems.push(
                "Cors.AllowCredentials cannot be true with AllowOrigins \"*\": browsers refuse credentials for any origin; name the origins".into(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(problems.join("; ")))
        }
    }

    fn origin_allowed(&self, origin: &str) -> Option<&str> {
        self.allow_origins
            .iter()
            .flatten()
            .find(|o| *o == "*" || o.eq_ignore_ascii_case(origin))
            .map(String::as_str)
    }

    /// The headers a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
    /// gets; none when the origin or the method is not allowed.
    pub fn preflight(&self, origin: &str, method: &str) -> Vec<(&'static str, String)> {
        let Some(allowed) = self.origin_allowed(origin) else {
            return Vec::new();
        };
        let methods = self.allow_methods.clone().unwrap_or_default();
        if !methods
            .iter()
            .any(|m| m == "*" || m.eq_ignore_ascii_case(method))
        {
            return Vec::new();
        }
        let mut out = vec![
            (
                "access-control-allow-origin",
                self.origin_value(allowed, origin),
            ),
            ("access-control-allow-methods", methods.join(",")),
        ];
        if let Some(headers) = self.allow_headers.as_ref().filter(|h| !h.is_empty()) {
            out.push(("access-control-allow-headers", headers.join(",")));
        }
        if let Some(age) = self.max_age {
            out.push(("access-control-max-age", age.to_string()));
        }
        if self.allow_credentials == Some(true) {
            out.push(("access-control-allow-credentials", "true".into()));
        }
        out.push(("vary", "Origin".into()));
        out
    }

    /// The headers an ordinary response to `origin` gets (none for another origin).
    pub fn response_headers(&self, origin: &str) -> Vec<(&'static str, String)> {
        let Some(allowed) = self.origin_allowed(origin) else {
            return Vec::new();
        };
        let mut out = vec![(
            "access-control-allow-origin",
            self.origin_value(allowed, origin),
        )];
        if let Some(headers) = self.expose_headers.as_ref().filter(|h| !h.is_empty()) {
            out.push(("access-control-expose-headers", headers.join(",")));
        }
        if self.allow_credentials == Some(true) {
            out.push(("access-control-allow-credentials", "true".into()));
        }
        out.push(("vary", "Origin".into()));
        out
    }

    fn origin_value(&self, allowed: &str, origin: &str) -> String {
        if allowed == "*" {
            "*".into()
        } else {
            origin.to_owned()
        }
    }
}

fn valid_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && origin.len() <= 253
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]*".contains(c))
}

/// CreateFunctionUrlConfig's body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateUrlRequest {
    pub auth_type: String,
    #[serde(default)]
    pub cors: Option<Cors>,
    #[serde(default)]
    pub invoke_mode: Option<String>,
}

/// UpdateFunctionUrlConfig's body: what it names changes.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateUrlRequest {
    #[serde(default)]
    pub auth_type: Option<String>,
    #[serde(default)]
    pub cors: Option<Cors>,
    #[serde(default)]
    pub invoke_mode: Option<String>,
}

/// A URL configuration as the API returns it (and the host keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UrlConfig {
    pub function_url: String,
    pub function_arn: String,
    pub auth_type: AuthType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    pub creation_time: String,
    pub last_modified_time: String,
    pub invoke_mode: InvokeMode,
}

/// An HTTP request to a URL, as the event needs it.
#[derive(Debug)]
pub struct UrlRequest<'a> {
    pub method: &'a str,
    /// The path after the URL's own part (`/` at least), still percent-encoded.
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
    pub source_ip: String,
    pub url_id: &'a str,
    pub region: &'a str,
    /// The caller's account for an `AWS_IAM` URL; `None` for a public one.
    pub account_id: Option<&'a str>,
    pub request_id: &'a str,
    /// `dd/Mon/yyyy:HH:MM:SS +0000`.
    pub time: String,
    pub time_epoch_ms: u64,
}

/// Whether a body of this content type goes to the function as text.
fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type.map(str::to_ascii_lowercase) else {
        return false;
    };
    ct.starts_with("text/")
        || ["json", "xml", "javascript", "x-www-form-urlencoded", "yaml"]
            .iter()
            .any(|t| ct.contains(t))
}

/// The payload format 2.0 event.
pub fn event(req: &UrlRequest<'_>) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut headers: Map<String, Value> = Map::new();
    let mut cookies: Vec<String> = Vec::new();
    for name in req.headers.keys() {
        let values: Vec<&str> = req
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if name == http::header::COOKIE {
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split(';'))
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            );
            continue;
        }
        headers.insert(name.as_str().to_owned(), Value::String(values.join(",")));
    }
    let mut query: Map<String, Value> = Map::new();
    for pair in req.raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (form_decode(k), form_decode(v));
        match query.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k, Value::String(v));
            }
        }
    }
    let user_agent = req
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let domain = format!("{}.lambda-url.{}.on.aws", req.url_id, req.region);
    let mut context = json!({
        "accountId": req.account_id.unwrap_or("anonymous"),
        "apiId": req.url_id,
        "domainName": domain,
        "domainPrefix": req.url_id,
        "http": {
            "method": req.method,
            "path": req.raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": req.source_ip,
            "userAgent": user_agent,
        },
        "requestId": req.request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": req.time,
        "timeEpoch": req.time_epoch_ms,
    });
    if let Some(account) = req.account_id {
        context["authorizer"] = json!({"iam": {
            "accessKey": access_key(req.headers),
            "accountId": account,
            "callerId": account,
            "userArn": format!("arn:aws:iam::{account}:root"),
            "userId": account,
        }});
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": req.raw_path,
        "rawQueryString": req.raw_query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !req.body.is_empty() {
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        match std::str::from_utf8(req.body) {
            Ok(text) if is_text(content_type) => event["body"] = json!(text),
            _ => {
                event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(req.body));
                event["isBase64Encoded"] = json!(true);
            }
        }
    }
    event
}

fn access_key(headers: &http::HeaderMap) -> String {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .unwrap_or("")
        .to_owned()
}

/// A query string's `+` and `%XX` decoded.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP answer: status, headers, cookies (`Set-Cookie` each) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub cookies: Vec<String>,
    pub body: Vec<u8>,
}

/// A function's buffered result read as AWS reads it: an object with `statusCode` is the
/// response (`headers`, `cookies`, `body`, `isBase64Encoded`); anything else is a 200
/// `application/json` body.
pub fn answer(result: &[u8]) -> Result<HttpAnswer, String> {
    let plain = || HttpAnswer {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        cookies: Vec::new(),
        body: result.to_vec(),
    };
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(result) else {
        return Ok(plain());
    };
    let Some(status) = object.get("statusCode") else {
        return Ok(plain());
    };
    let status = status
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| format!("statusCode {status} is not an HTTP status"))?;
    let (headers, cookies) = head_of(&object)?;
    let base64 = object
        .get("isBase64Encoded")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let body = match object.get("body") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) if base64 => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("body is not base64: {e}"))?,
        Some(serde_json::Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    Ok(HttpAnswer {
        status,
        headers,
        cookies,
        body,
    })
}

type Head = (Vec<(String, String)>, Vec<String>);

fn head_of(object: &serde_json::Map<String, serde_json::Value>) -> Result<Head, String> {
    let mut headers = Vec::new();
    if let Some(map) = object.get("headers").and_then(serde_json::Value::as_object) {
        for (name, value) in map {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(&value).is_err()
            {
                return Err(format!("header {name:?} is not a valid HTTP header"));
            }
            headers.push((name.to_ascii_lowercase(), value));
        }
    }
    let mut cookies = Vec::new();
    for cookie in object
        .get("cookies")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let cookie = cookie.as_str().unwrap_or_default();
        if http::HeaderValue::from_str(cookie).is_err() {
            return Err(format!("cookie {cookie:?} is not a valid Set-Cookie value"));
        }
        cookies.push(cookie.to_owned());
    }
    Ok((headers, cookies))
}

/// Where a streamed answer's prelude ends: its JSON head and the index of the first body
/// byte. `Ok(None)`: not all here yet (and within [`MAX_PRELUDE_BYTES`]).
pub fn split_prelude(bytes: &[u8]) -> Result<Option<(HttpAnswer, usize)>, String> {
    let delimiter = &super::stream::PRELUDE_DELIMITER;
    let Some(at) = bytes.windows(delimiter.len()).position(|w| w == delimiter) else {
        if bytes.len() > MAX_PRELUDE_BYTES {
            return Err(format!(
                "no prelude delimiter within the first {MAX_PRELUDE_BYTES} bytes"
            ));
        }
        return Ok(None);
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes[..at])
        .map_err(|e| format!("the prelude is not JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| "the prelude is not a JSON object".to_owned())?;
    let status = match object.get("statusCode") {
        None => 200,
        Some(s) => s
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| format!("statusCode {s} is not an HTTP status"))?,
    };
    let (headers, cookies) = head_of(object)?;
    Ok(Some((
        HttpAnswer {
            status,
            headers,
            cookies,
            body: Vec::new(),
        },
        at + delimiter.len(),
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cors(json: serde_json::Value) -> Cors {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn invalid_cors_is_named_whole() {
        let c = cors(serde_json::json!({
            "AllowMethods": ["GET", "FETCH"], "AllowOrigins": ["*", "example.com"],
            "MaxAge": 90000, "AllowCredentials": true, "AllowHeaders": ["bad header"]
        }));
        let ApiError::Validation(message) = c.validate().unwrap_err() else {
            panic!()
        };
        for part in [
            "FETCH",
            "example.com",
            "90000",
            "AllowCredentials",
            "bad header",
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
        assert!(serde_json::from_value::<Cors>(serde_json::json!({"AllowOrigin": ["*"]})).is_err());
        cors(serde_json::json!({"AllowOrigins": ["https://app.example:8443", "*"], "AllowMethods": ["*"], "MaxAge": 86400}))
            .validate()
            .unwrap();
    }

    #[test]
    fn preflight_answers_only_allowed_origins_and_methods() {
        let c = cors(serde_json::json!({
            "AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["x-custom"], "MaxAge": 300, "ExposeHeaders": ["x-answer"]
        }));
        let h = c.preflight("https://app.example", "POST");
        assert!(h.contains(&("access-control-allow-origin", "https://app.example".into())));
        assert!(h.contains(&("access-control-allow-methods", "GET,POST".into())));
        assert!(h.contains(&("access-control-allow-headers", "x-custom".into())));
        assert!(h.contains(&("access-control-max-age", "300".into())));
        assert!(c.preflight("https://evil.example", "POST").is_empty());
        assert!(c.preflight("https://app.example", "DELETE").is_empty());
        let r = c.response_headers("https://app.example");
        assert!(r.contains(&("access-control-expose-headers", "x-answer".into())));
        assert!(c.response_headers("https://evil.example").is_empty());
    }

    #[test]
    fn requests_become_payload_2_events() {
        let mut headers = http::HeaderMap::new();
        headers.append("x-multi", "a".parse().unwrap());
        headers.append("x-multi", "b".parse().unwrap());
        headers.append("cookie", "c1=v1; c2=v2".parse().unwrap());
        headers.append("content-type", "application/octet-stream".parse().unwrap());
        let req = UrlRequest {
            method: "POST",
            raw_path: "/a/b",
            raw_query: "x=1&x=2&y=h%C3%A9+llo",
            headers: &headers,
            body: &[0, 255, 1],
            source_ip: "127.0.0.1".into(),
            url_id: "abc",
            region: "us-east-1",
            account_id: None,
            request_id: "r1",
            time: "07/Dec/2026:10:00:00 +0000".into(),
            time_epoch_ms: 1,
        };
        let e = event(&req);
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["rawPath"], "/a/b");
        assert_eq!(e["headers"]["x-multi"], "a,b");
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["cookies"], serde_json::json!(["c1=v1", "c2=v2"]));
        assert_eq!(
            e["queryStringParameters"],
            serde_json::json!({"x": "1,2", "y": "hé llo"})
        );
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["body"], "AP8B");
        assert_eq!(e["requestContext"]["http"]["method"], "POST");
        assert_eq!(e["requestContext"]["accountId"], "anonymous");
        assert_eq!(
            e["requestContext"]["domainName"],
            "abc.lambda-url.us-east-1.on.aws"
        );
    }

    #[test]
    fn answers_are_read_as_aws_reads_them() {
        let a = answer(br#"{"statusCode":201,"headers":{"X-A":"1"},"cookies":["k=v"],"body":"AAE=","isBase64Encoded":true}"#).unwrap();
        assert_eq!(a.status, 201);
        assert_eq!(a.headers, vec![("x-a".to_owned(), "1".to_owned())]);
        assert_eq!(a.cookies, vec!["k=v".to_owned()]);
        assert_eq!(a.body, vec![0, 1]);
        let a = answer(br#"{"hello":"world"}"#).unwrap();
        assert_eq!(
            (a.status, a.body.as_slice()),
            (200, br#"{"hello":"world"}"#.as_slice())
        );
        assert_eq!(answer(b"[1,2]").unwrap().status, 200);
        assert!(answer(br#"{"statusCode":99}"#).is_err());
        assert!(answer(br#"{"statusCode":200,"headers":{"x":"a\nb"}}"#).is_err());
    }

    #[test]
    fn preludes_split_from_the_body() {
        let mut bytes =
            br#"{"statusCode":202,"headers":{"content-type":"text/plain"},"cookies":["s=1"]}"#
                .to_vec();
        assert!(split_prelude(&bytes).unwrap().is_none());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(b"body");
        let (head, at) = split_prelude(&bytes).unwrap().unwrap();
        assert_eq!(head.status, 202);
        assert_eq!(&bytes[at..], b"body");
        assert!(split_prelude(&vec![b'x'; MAX_PRELUDE_BYTES + 1]).is_err());
    }
}
