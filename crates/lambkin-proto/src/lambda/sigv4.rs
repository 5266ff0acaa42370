//! AWS Signature Version 4 on the Lambda API: the `Authorization` header parsed into its parts,
//! a request verified as AWS verifies it (the headers the client chose to sign, the payload's
//! hash, the credential scope the client chose, a 15-minute clock-skew window), and requests
//! signed as an SDK signs them.
//!
//! The canonical request and the signature are computed by `aws-sigv4`, the signer of the AWS
//! SDK for Rust: the verifier hands it exactly the headers the client listed in
//! `SignedHeaders`, at the client's own `X-Amz-Date`, and compares the result with the
//! client's signature in constant time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::calendar::{civil_from_days, days_from_civil};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// The algorithm name that opens an `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The signing name of the Lambda API.
pub const SERVICE: &str = "lambda";
/// How far a request's `X-Amz-Date` may be from the host's clock, either way (as AWS).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// Why a request's signature was not accepted. Each maps to the error AWS answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Authorization` header at all.
    #[error("Missing Authentication Token")]
    Missing,
    /// An `Authorization` header that is not a complete SigV4 one.
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not one the host knows.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The signature does not match the one computed with the key's secret.
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")]
    Mismatch,
    /// `X-Amz-Date` is outside the clock-skew window.
    #[error("{0}")]
    Expired(String),
}

/// The parts of an `AWS4-HMAC-SHA256` `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    /// `YYYYMMDD` of the credential scope.
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// Lowercase header names, as listed (`;`-separated in the header).
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

impl<'a> Authorization<'a> {
    /// Parses `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
    /// SignedHeaders=a;b, Signature=HEX`, naming what is wrong as AWS does.
    pub fn parse(header: &'a str) -> Result<Self, SignatureError> {
        let rest = header
            .strip_prefix(ALGORITHM)
            .filter(|r| r.starts_with(' '))
            .ok_or_else(|| {
                SignatureError::Incomplete(format!(
                    "Authorization header requires the {ALGORITHM} algorithm"
                ))
            })?;
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                credential = Some(v);
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                signed_headers = Some(v);
            } else if let Some(v) = part.strip_prefix("Signature=") {
                signature = Some(v);
            }
        }
        let missing = |what: &str| {
            SignatureError::Incomplete(format!(
                "Authorization header requires '{what}' parameter. Authorization={header}"
            ))
        };
        let credential = credential.ok_or_else(|| missing("Credential"))?;
        let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
        let signature = signature.ok_or_else(|| missing("Signature"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, terminator] = scope[..] else {
            return Err(SignatureError::Incomplete(format!(
                "Credential should be scoped to a valid region, not '{credential}'"
            )));
        };
        if terminator != "aws4_request" {
            return Err(SignatureError::Incomplete(format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'"
            )));
        }
        if service != SERVICE {
            return Err(SignatureError::Incomplete(format!(
                "Credential should be scoped to correct service: '{SERVICE}', not '{service}'"
            )));
        }
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SignatureError::Incomplete(format!(
                "Credential should be scoped to a valid date, not '{date}'"
            )));
        }
        if access_key_id.is_empty() || region.is_empty() {
            return Err(SignatureError::Incomplete(format!(
                "Credential should name an access key and a region, not '{credential}'"
            )));
        }
        Ok(Self {
            access_key_id,
            date,
            region,
            service,
            signed_headers: signed_headers.split(';').collect(),
            signature,
        })
    }
}

/// A request as the verifier needs it: what the client signed.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The request target as received (path and query, percent-encoded as sent).
    pub uri: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// Verifies `request`'s signature. `secret_of` gives the secret of a known access key id.
/// On success, returns the access key id that signed it.
pub fn verify<'r>(
    request: &SignedRequest<'r>,
    secret_of: impl FnOnce(&str) -> Option<String>,
    now: SystemTime,
) -> Result<&'r str, SignatureError> {
    let header = request
        .headers
        .get(http::header::AUTHORIZATION)
        .ok_or(SignatureError::Missing)?
        .to_str()
        .map_err(|_| SignatureError::Incomplete("Authorization header is not ASCII".into()))?;
    let auth = Authorization::parse(header)?;
    let amz_date = request
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            SignatureError::Incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                    .into(),
            )
        })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        SignatureError::Incomplete(format!("X-Amz-Date {amz_date:?} is not YYYYMMDDTHHMMSSZ"))
    })?;
    if !amz_date.starts_with(auth.date) {
        return Err(SignatureError::Incomplete(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            auth.date,
            &amz_date[..8]
        )));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&required) {
            return Err(SignatureError::Incomplete(format!(
                "'{required}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    check_skew(signed_at, amz_date, now)?;
    let secret = secret_of(auth.access_key_id).ok_or(SignatureError::UnknownKey)?;
    let mut headers = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        for value in request.headers.get_all(*name) {
            let value = value.to_str().map_err(|_| SignatureError::Mismatch)?;
            headers.push((*name, value));
        }
    }
    let expected = signature(
        request.method,
        request.uri,
        headers.into_iter(),
        request.body,
        &Key {
            access_key_id: auth.access_key_id,
            secret: &secret,
        },
        auth.region,
        signed_at,
    )
    .ok_or(SignatureError::Mismatch)?;
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        Ok(auth.access_key_id)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// An access key: what signs.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub access_key_id: &'a str,
    pub secret: &'a str,
}

/// Signs `request` (whose body is `body`) for the Lambda API in `region` at `now`, as an SDK
/// does: `X-Amz-Date` and `Authorization` are added. The request must carry a `Host` header.
pub fn sign_request<B>(
    request: &mut http::Request<B>,
    body: &[u8],
    key: &Key<'_>,
    region: &str,
    now: SystemTime,
) -> Result<(), String> {
    sign_request_with_token(request, body, key, None, region, now)
}

/// As [`sign_request`], with temporary credentials' session token (sent as
/// `X-Amz-Security-Token` and signed, as an SDK does).
pub fn sign_request_with_token<B>(
    request: &mut http::Request<B>,
    body: &[u8],
    key: &Key<'_>,
    session_token: Option<&str>,
    region: &str,
    now: SystemTime,
) -> Result<(), String> {
    let identity: Identity = Credentials::new(
        key.access_key_id,
        key.secret,
        session_token.map(str::to_owned),
        None,
        "lambkin",
    )
    .into();
    let settings = SigningSettings::default();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let uri = request.uri().to_string();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

fn credentials(key: &Key<'_>) -> Credentials {
    Credentials::new(key.access_key_id, key.secret, None, None, "lambkin")
}

/// The hex signature of a request with exactly `headers` signed: nothing is left out (the
/// signer's default leaves out `user-agent` and others) or added but `x-amz-date`, which the
/// client signed too.
fn signature<'a>(
    method: &'a str,
    uri: &'a str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    body: &'a [u8],
    key: &Key<'_>,
    region: &str,
    at: SystemTime,
) -> Option<String> {
    let identity: Identity = credentials(key).into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::Headers;
    settings.excluded_headers = Some(Vec::new());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(at)
        .settings(settings)
        .build()
        .ok()?
        .into();
    let signable = SignableRequest::new(method, uri, headers, SignableBody::Bytes(body)).ok()?;
    let (_, signature) = sign(signable, &params).ok()?.into_parts();
    Some(signature)
}

fn check_skew(
    signed_at: SystemTime,
    amz_date: &str,
    now: SystemTime,
) -> Result<(), SignatureError> {
    // The texts are made only for a refusal: a request in the window costs no formatting.
    if signed_at + MAX_CLOCK_SKEW < now {
        let earliest = format_amz_date(now - MAX_CLOCK_SKEW);
        let now_text = format_amz_date(now);
        return Err(SignatureError::Expired(format!(
            "Signature expired: {amz_date} is now earlier than {earliest} ({now_text} - 15 min.)"
        )));
    }
    if signed_at > now + MAX_CLOCK_SKEW {
        let latest = format_amz_date(now + MAX_CLOCK_SKEW);
        let now_text = format_amz_date(now);
        return Err(SignatureError::Expired(format!(
            "Signature not yet current: {amz_date} is still later than {latest} ({now_text} + 15 min.)"
        )));
    }
    Ok(())
}

/// Whether two secrets are equal, in time that depends on their lengths only: every
/// comparison of something a caller presents against a key goes through here.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `YYYYMMDDTHHMMSSZ` → time.
pub fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    let seconds = u64::try_from(seconds).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// Time → `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: Key<'static> = Key {
        access_key_id: "AKIDEXAMPLE",
        secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    };

    fn signed(uri: &str, body: &'static [u8], at: SystemTime) -> http::Request<&'static [u8]> {
        let mut req = http::Request::post(uri)
            .header("host", "127.0.0.1:3001")
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        sign_request(&mut req, body, &KEY, "eu-west-1", at).unwrap();
        req
    }

    fn check(req: &http::Request<&[u8]>, now: SystemTime) -> Result<String, SignatureError> {
        let uri = req.uri().to_string();
        let request = SignedRequest {
            method: req.method().as_str(),
            uri: &uri,
            headers: req.headers(),
            body: req.body(),
        };
        verify(
            &request,
            |id| (id == KEY.access_key_id).then(|| KEY.secret.to_owned()),
            now,
        )
        .map(str::to_owned)
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let now = SystemTime::now();
        let uri = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af/invocations?Qualifier=%24LATEST";
        let req = signed(uri, b"{\"a\":1}", now);
        assert_eq!(check(&req, now).unwrap(), "AKIDEXAMPLE");

        let mut other_body = signed(uri, b"{\"a\":1}", now);
        *other_body.body_mut() = b"{\"a\":2}";
        assert_eq!(check(&other_body, now), Err(SignatureError::Mismatch));

        let mut other_header = signed(uri, b"{}", now);
        other_header
            .headers_mut()
            .insert("content-type", http::HeaderValue::from_static("text/plain"));
        assert_eq!(check(&other_header, now), Err(SignatureError::Mismatch));

        let mut other_path = signed("/2015-03-31/functions/f/invocations", b"{}", now);
        *other_path.uri_mut() = "/2015-03-31/functions/g/invocations".parse().unwrap();
        assert_eq!(check(&other_path, now), Err(SignatureError::Mismatch));
    }

    #[test]
    fn unknown_keys_missing_headers_and_old_dates_are_named() {
        let now = SystemTime::now();
        let mut req = signed("/2015-03-31/functions", b"{}", now);
        let auth = req.headers()["authorization"].to_str().unwrap().to_owned();
        req.headers_mut().insert(
            "authorization",
            auth.replace("AKIDEXAMPLE", "AKIDOTHER").parse().unwrap(),
        );
        assert_eq!(check(&req, now), Err(SignatureError::UnknownKey));

        req.headers_mut().remove("authorization");
        assert_eq!(check(&req, now), Err(SignatureError::Missing));

        let old = signed(
            "/2015-03-31/functions",
            b"{}",
            now - Duration::from_secs(16 * 60),
        );
        match check(&old, now) {
            Err(SignatureError::Expired(m)) => assert!(m.starts_with("Signature expired: "), "{m}"),
            other => panic!("{other:?}"),
        }
        let future = signed(
            "/2015-03-31/functions",
            b"{}",
            now + Duration::from_secs(16 * 60),
        );
        assert!(matches!(
            check(&future, now),
            Err(SignatureError::Expired(_))
        ));
        let skewed = signed(
            "/2015-03-31/functions",
            b"{}",
            now - Duration::from_secs(14 * 60),
        );
        assert!(check(&skewed, now).is_ok());
    }

    #[test]
    fn incomplete_headers_say_what_is_missing() {
        for (header, wanted) in [
            ("Bearer x", "algorithm"),
            ("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00", "'Credential'"),
            (
                "AWS4-HMAC-SHA256 Credential=A/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
                "service",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=A/20250101/us-east-1/lambda/aws4, SignedHeaders=host, Signature=00",
                "terminator",
            ),
        ] {
            match Authorization::parse(header) {
                Err(SignatureError::Incomplete(m)) => assert!(m.contains(wanted), "{m}"),
                other => panic!("{header}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_request_signed_by_botocore_verifies() {
        // Signed by botocore's SigV4Auth (the AWS CLI's and boto3's signer): another
        // implementation's canonical request, double-encoded ARN path and query included.
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1:3001".parse().unwrap());
        headers.insert("x-amz-invocation-type", "RequestResponse".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("x-amz-date", "20261207T001652Z".parse().unwrap());
        headers.insert(
            "user-agent",
            "not signed, so free to differ".parse().unwrap(),
        );
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/us-east-1/lambda/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-invocation-type, \
             Signature=d9e74a5e1e38208156b5e693bd9a206eb5237064a30472e63310e99b61782b50"
                .parse()
                .unwrap(),
        );
        let uri = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af/invocations?Qualifier=%24LATEST";
        let at = parse_amz_date("20261207T001652Z").unwrap();
        let secret = |_: &str| Some(KEY.secret.to_owned());
        let request = SignedRequest {
            method: "POST",
            uri,
            headers: &headers,
            body: b"{\"a\":1}",
        };
        assert_eq!(verify(&request, secret, at).unwrap(), "AKIDEXAMPLE");
        let request = SignedRequest {
            method: "POST",
            uri,
            headers: &headers,
            body: b"{\"a\":2}",
        };
        assert_eq!(verify(&request, secret, at), Err(SignatureError::Mismatch));
    }

    /// Where verifying one invoke request's signature spends its time, per part; prints, asserts
    /// nothing. Run optimised:
    /// `cargo test --release -p lambkin-proto verify_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a test: run it by name"]
    fn verify_cost() {
        use std::hint::black_box;
        use std::time::Instant;
        // The fastest of 20 batches: on a shared machine the others hold preemptions.
        const BATCH: u32 = 1_000;
        let time = |what: &str, f: &mut dyn FnMut()| {
            let fastest = (0..20)
                .map(|_| {
                    let started = Instant::now();
                    for _ in 0..BATCH {
                        f();
                    }
                    started.elapsed()
                })
                .min()
                .unwrap_or_default();
            let per = fastest.as_secs_f64() * 1e6 / f64::from(BATCH);
            println!("{what:<48} {per:>7.2} µs");
        };
        let now = SystemTime::now();
        let uri = "/2015-03-31/functions/echo/invocations";
        let body: &'static [u8] =
            br#"{"bench":"lambkin","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
        let req = signed(uri, body, now);
        let header = req.headers()["authorization"].to_str().unwrap().to_owned();
        assert!(check(&req, now).is_ok());
        time("verify (whole)", &mut || {
            black_box(check(black_box(&req), now).unwrap());
        });
        time("  Authorization::parse", &mut || {
            black_box(Authorization::parse(black_box(&header)).unwrap());
        });
        time(
            "  aws-sigv4 sign (canonical request, hashes, key)",
            &mut || {
                let headers = [
                    ("host", "127.0.0.1:3001"),
                    ("content-type", "application/json"),
                    ("x-amz-date", "20260101T000000Z"),
                ];
                black_box(signature(
                    "POST",
                    uri,
                    headers.into_iter(),
                    body,
                    &KEY,
                    "eu-west-1",
                    now,
                ));
            },
        );
        time("    the key as an Identity (made, dropped)", &mut || {
            black_box(Identity::from(credentials(black_box(&KEY))));
        });
        time("    generate_signing_key (4 HMAC-SHA256)", &mut || {
            black_box(v4::generate_signing_key(
                black_box(KEY.secret),
                now,
                "eu-west-1",
                SERVICE,
            ));
        });
        time("    calculate_signature (1 HMAC-SHA256)", &mut || {
            black_box(v4::calculate_signature(
                black_box([7u8; 32]),
                black_box(&[b'x'; 120]),
            ));
        });
        time("sign_request (the client's side)", &mut || {
            black_box(signed(uri, body, now));
        });
        // In a host or client, a request's signature is computed between other work, which has
        // taken the CPU's caches: each one timed alone after 4 MB (more than L2) were touched.
        let mut other_work = vec![0u8; 4 << 20];
        let mut cold = |what: &str, f: &mut dyn FnMut()| {
            let mut samples: Vec<f64> = (0..400)
                .map(|i| {
                    for line in other_work.chunks_mut(64) {
                        line[0] = line[0].wrapping_add(i as u8);
                    }
                    black_box(&other_work);
                    let started = Instant::now();
                    f();
                    started.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            samples.sort_by(f64::total_cmp);
            println!("{what:<48} {:>7.2} µs (p50)", samples[samples.len() / 2]);
        };
        cold("verify, caches taken by other work", &mut || {
            black_box(check(black_box(&req), now).unwrap());
        });
        cold("sign_request, caches taken by other work", &mut || {
            black_box(signed(uri, body, now));
        });
    }

    #[test]
    fn dates_round_trip() {
        for text in [
            "20150830T123600Z",
            "20000229T000000Z",
            "19700101T000000Z",
            "20991231T235959Z",
        ] {
            assert_eq!(format_amz_date(parse_amz_date(text).unwrap()), text);
        }
        for bad in [
            "2015-08-30T12:36:00Z",
            "20151330T123600Z",
            "20150830T123600",
            "",
        ] {
            assert!(parse_amz_date(bad).is_none(), "{bad}");
        }
    }
}
