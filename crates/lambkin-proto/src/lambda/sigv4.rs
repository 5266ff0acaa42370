//! AWS Signature Version 4 on the Lambda API: the `Authorization` header parsed into its parts,
//! a request verified as AWS verifies it (the headers the client chose to sign, the payload's
//! hash, the credential scope the client chose, a 15-minute clock-skew window), and requests
//! signed as an SDK signs them.
//!
//! Requests are signed by `aws-sigv4`, the signer of the AWS SDK for Rust. The verifier
//! computes the expected signature itself, on every request, so it does the least work: it
//! writes the canonical request exactly as `aws-sigv4` would for exactly the headers the
//! client listed in `SignedHeaders`, at the client's own `X-Amz-Date` (path normalized and
//! encoded twice, query decoded, re-encoded and sorted, header values trimmed), into a
//! buffer each thread reuses, and keys its HMAC with a signing key a [`Verifier`] keeps per
//! access key id, day and region (derived again when the key's secret changes). The result
//! is compared with the client's signature in constant time. A property test holds it to
//! `aws-sigv4`'s own signature on generated requests.

use std::cell::Cell;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::calendar::{civil_from_days, days_from_civil};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use hmac::{Hmac, KeyInit, Mac};
use sigv4_sha2::{Digest, Sha256};

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
        let mut scope = credential.split('/');
        let [Some(access_key_id), Some(date), Some(region), Some(service), Some(terminator), None] =
            std::array::from_fn(|_| scope.next())
        else {
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

/// The request's `Authorization` header, parsed; what is missing or wrong named as AWS does.
pub fn authorization(headers: &http::HeaderMap) -> Result<Authorization<'_>, SignatureError> {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(SignatureError::Missing)?
        .to_str()
        .map_err(|_| SignatureError::Incomplete("Authorization header is not ASCII".into()))?;
    Authorization::parse(header)
}

/// How many derived signing keys a [`Verifier`] keeps: the host's key and a few components'
/// keys, each on one region; a key used on more regions or days than this is derived again.
const CACHED_KEYS: usize = 8;

/// Verifies requests' signatures as AWS does, keeping the signing keys it derived (per access
/// key id, day and region, checked against the secret each was derived from) so that a request
/// costs two SHA-256 digests and one HMAC. One is kept for the host's life; it is `Sync`.
#[derive(Debug, Default)]
pub struct Verifier {
    keys: Mutex<SigningKeys>,
}

impl Verifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies `request`'s signature. `secret_of` gives the secret of a known access key id;
    /// it is asked before anything is derived or kept, so an unknown caller costs no key
    /// derivation and takes no place among the kept keys. On success, returns the access key
    /// id that signed it.
    pub fn verify<'r>(
        &self,
        request: &SignedRequest<'r>,
        secret_of: impl FnOnce(&str) -> Option<String>,
        now: SystemTime,
    ) -> Result<&'r str, SignatureError> {
        self.verify_parsed(request, authorization(request.headers)?, secret_of, now)
    }

    /// As [`Verifier::verify`], with the request's `Authorization` header parsed already
    /// ([`authorization`] of its headers), as a caller that looked at it before reading the
    /// body has it.
    pub fn verify_parsed<'r>(
        &self,
        request: &SignedRequest<'r>,
        mut auth: Authorization<'r>,
        secret_of: impl FnOnce(&str) -> Option<String>,
        now: SystemTime,
    ) -> Result<&'r str, SignatureError> {
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
        let expected = self
            .expected_signature(request, &mut auth, signed_at, &secret)
            .ok_or(SignatureError::Mismatch)?;
        if constant_time_eq(&expected, auth.signature.as_bytes()) {
            Ok(auth.access_key_id)
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    /// The lowercase hex signature of `request` with the headers `auth` lists, at `signed_at`,
    /// as `aws-sigv4` computes it with the settings of an SDK signing these headers (every
    /// listed header signed, none left out, the payload hashed). `None` where `aws-sigv4` fails
    /// (a target that is no URI, a listed header whose value is not visible ASCII, no `Host`).
    fn expected_signature(
        &self,
        request: &SignedRequest<'_>,
        auth: &mut Authorization<'_>,
        signed_at: SystemTime,
        secret: &str,
    ) -> Option<[u8; 64]> {
        // The signer formats the time it was given: `X-Amz-Date` as parsed, not as sent.
        let date_time = amz_date_bytes(signed_at)?;
        let date: [u8; 8] = date_time[..8].try_into().ok()?;
        SCRATCH.with(|cell| {
            let mut scratch = cell.take();
            let signature = scratch
                .write_string_to_sign(request, auth, &date_time)
                .and_then(|()| {
                    let mut mac =
                        self.signing_mac(auth.access_key_id, secret, &date, auth.region)?;
                    mac.update(&scratch.text);
                    Some(hex32(&mac.finalize().into_bytes()))
                });
            if scratch.capacity() <= MAX_KEPT_SCRATCH {
                cell.set(scratch);
            }
            signature
        })
    }

    /// The HMAC keyed with the signing key of `access_key_id` for `date` and `region`
    /// (kDate → kRegion → kService → kSigning), from the kept ones when it was derived from this
    /// very secret, else derived and kept (the least recently used one forgotten past
    /// [`CACHED_KEYS`]).
    fn signing_mac(
        &self,
        access_key_id: &str,
        secret: &str,
        date: &[u8; 8],
        region: &str,
    ) -> Option<HmacSha256> {
        let is_scope = |k: &SigningKey| {
            k.access_key_id == access_key_id && k.date == *date && k.region == region
        };
        {
            let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(i) = keys.kept.iter().position(is_scope) {
                // A key whose secret changed since must not verify with what the old one derived.
                if constant_time_eq(keys.kept[i].secret.as_bytes(), secret.as_bytes()) {
                    let mac = keys.kept[i].mac.clone();
                    keys.kept[i..].rotate_left(1);
                    return Some(mac);
                }
                keys.kept.remove(i);
            }
        }
        let mac = derive_signing_mac(secret, date, region)?;
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.kept.retain(|k| !is_scope(k));
        if keys.kept.len() >= CACHED_KEYS {
            keys.kept.remove(0);
        }
        keys.kept.push(SigningKey {
            access_key_id: access_key_id.to_owned(),
            secret: secret.to_owned(),
            date: *date,
            region: region.to_owned(),
            mac: mac.clone(),
        });
        Some(mac)
    }

    #[cfg(test)]
    fn kept_keys(&self) -> usize {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .kept
            .len()
    }
}

type HmacSha256 = Hmac<Sha256>;

/// The derived signing keys a [`Verifier`] keeps, least recently used first.
#[derive(Default)]
struct SigningKeys {
    kept: Vec<SigningKey>,
}

impl std::fmt::Debug for SigningKeys {
    // Neither secrets nor keys in a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kept", &self.kept.len())
            .finish()
    }
}

struct SigningKey {
    access_key_id: String,
    /// The secret `mac`'s key was derived from.
    secret: String,
    date: [u8; 8],
    region: String,
    /// Keyed with the signing key: its inner and outer pads already hashed.
    mac: HmacSha256,
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), "lambda"), "aws4_request"),
/// as an HMAC keyed with it.
fn derive_signing_mac(secret: &str, date: &[u8; 8], region: &str) -> Option<HmacSha256> {
    let hmac = |key: &[u8], data: &[u8]| -> Option<[u8; 32]> {
        let mut mac = HmacSha256::new_from_slice(key).ok()?;
        mac.update(data);
        Some(mac.finalize().into_bytes().into())
    };
    let k_secret = format!("AWS4{secret}");
    let k_date = hmac(k_secret.as_bytes(), date)?;
    let k_region = hmac(&k_date, region.as_bytes())?;
    let k_service = hmac(&k_region, SERVICE.as_bytes())?;
    let k_signing = hmac(&k_service, b"aws4_request")?;
    HmacSha256::new_from_slice(&k_signing).ok()
}

/// The most a thread keeps of the buffers it wrote a canonical request into: past this, a
/// rare large request's buffers are freed rather than kept.
const MAX_KEPT_SCRATCH: usize = 64 * 1024;

thread_local! {
    /// Each thread's buffers for canonical requests, grown to the largest request seen and
    /// reused: once grown, writing and hashing a canonical request allocates nothing.
    static SCRATCH: Cell<Scratch> = const {
        Cell::new(Scratch {
            text: Vec::new(),
            params: Vec::new(),
            pairs: Vec::new(),
            decoded: Vec::new(),
        })
    };
}

#[derive(Default)]
struct Scratch {
    /// The canonical request, then the string to sign.
    text: Vec<u8>,
    /// The query's parameters decoded and encoded again, one after the other; then the
    /// signed header list.
    params: Vec<u8>,
    /// Each parameter in `params`: where its name starts, where its value starts and ends.
    pairs: Vec<(usize, usize, usize)>,
    /// One query component percent-decoded.
    decoded: Vec<u8>,
}

impl Scratch {
    fn capacity(&self) -> usize {
        self.text.capacity()
            + self.params.capacity()
            + self.decoded.capacity()
            + self.pairs.capacity() * std::mem::size_of::<(usize, usize, usize)>()
    }

    /// Leaves in `text` the string to sign: the algorithm, the time, the credential scope and
    /// the canonical request's hex SHA-256.
    fn write_string_to_sign(
        &mut self,
        request: &SignedRequest<'_>,
        auth: &mut Authorization<'_>,
        date_time: &[u8; 16],
    ) -> Option<()> {
        self.text.clear();
        self.write_canonical_request(request, &mut auth.signed_headers, date_time)?;
        let hashed = hex32(&Sha256::digest(&self.text));
        let out = &mut self.text;
        out.clear();
        out.extend_from_slice(ALGORITHM.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(date_time);
        out.push(b'\n');
        out.extend_from_slice(&date_time[..8]);
        out.push(b'/');
        out.extend_from_slice(auth.region.as_bytes());
        out.push(b'/');
        out.extend_from_slice(SERVICE.as_bytes());
        out.extend_from_slice(b"/aws4_request\n");
        out.extend_from_slice(&hashed);
        Some(())
    }

    /// The canonical request as `aws-sigv4` writes it (`canonical_request.rs`): method, path
    /// normalized and encoded twice, query re-encoded and sorted, the signed headers' values
    /// trimmed, their names, the payload's hash.
    fn write_canonical_request(
        &mut self,
        request: &SignedRequest<'_>,
        names: &mut [&str],
        date_time: &[u8; 16],
    ) -> Option<()> {
        let parsed: http::Uri;
        let (path, query) = if is_plain_target(request.uri) {
            match request.uri.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (request.uri, None),
            }
        } else {
            // What `http` makes of an unusual target (a fragment, a quote, an absolute URI),
            // as the signer parses it; a target it refuses is refused here too.
            parsed = request.uri.parse().ok()?;
            (parsed.path(), parsed.query())
        };
        let out = &mut self.text;
        out.extend_from_slice(request.method.as_bytes());
        out.push(b'\n');
        write_canonical_path(out, path);
        out.push(b'\n');
        if let Some(query) = query {
            self.write_canonical_query(query);
        }
        let out = &mut self.text;
        out.push(b'\n');
        write_canonical_headers(out, &mut self.params, request.headers, names, date_time)?;
        out.extend_from_slice(&hex32(&Sha256::digest(request.body)));
        Some(())
    }

    /// The query as `form_urlencoded` parses it (`&`-separated, empty parts skipped, split at
    /// the first `=`, `+` as a space, valid `%XX` decoded, invalid UTF-8 replaced), each name
    /// and value percent-encoded again (all but unreserved characters), sorted by name then
    /// value, joined `name=value` by `&`.
    fn write_canonical_query(&mut self, query: &str) {
        self.params.clear();
        self.pairs.clear();
        for part in query.as_bytes().split(|&b| b == b'&') {
            if part.is_empty() {
                continue;
            }
            let (name, value) = match part.iter().position(|&b| b == b'=') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, &[][..]),
            };
            let name_at = self.params.len();
            encode_form_component(&mut self.params, &mut self.decoded, name);
            let value_at = self.params.len();
            encode_form_component(&mut self.params, &mut self.decoded, value);
            self.pairs.push((name_at, value_at, self.params.len()));
        }
        let params = &self.params;
        self.pairs.sort_unstable_by(|a, b| {
            (&params[a.0..a.1], &params[a.1..a.2]).cmp(&(&params[b.0..b.1], &params[b.1..b.2]))
        });
        for (i, &(name, value, end)) in self.pairs.iter().enumerate() {
            if i > 0 {
                self.text.push(b'&');
            }
            self.text.extend_from_slice(&params[name..value]);
            self.text.push(b'=');
            self.text.extend_from_slice(&params[value..end]);
        }
    }
}

/// A request target `http` takes as it is, with no fragment: the path is what precedes the
/// first `?`, the query what follows it. Other targets go through `http`'s parser.
fn is_plain_target(uri: &str) -> bool {
    // `http`'s limit on a URI's length, and the bytes both its path and query accept.
    uri.len() <= usize::from(u16::MAX - 1)
        && uri.starts_with('/')
        && uri.bytes().all(
            |b| matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x5F | 0x61..=0x7E | 0x80..=0xFF),
        )
}

/// RFC 3986's unreserved characters: the only ones the canonical request leaves unencoded.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// `bytes` percent-encoded (uppercase hex) but unreserved characters, and `/` if `keep_slash`.
fn percent_encode(out: &mut Vec<u8>, mut bytes: &[u8], keep_slash: bool) {
    let kept = |b: u8| is_unreserved(b) || keep_slash && b == b'/';
    while !bytes.is_empty() {
        let run = bytes.iter().position(|&b| !kept(b)).unwrap_or(bytes.len());
        out.extend_from_slice(&bytes[..run]);
        if let Some(&b) = bytes.get(run) {
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[usize::from(b >> 4)],
                HEX_UPPER[usize::from(b & 15)],
            ]);
            bytes = &bytes[run + 1..];
        } else {
            bytes = &[];
        }
    }
}

/// The canonical URI: the path with its dot segments and empty segments removed (RFC 3986
/// 5.2.4 as `aws-sigv4` applies it: a trailing `/`, `/.` or `/..` leaves a trailing `/`), then
/// percent-encoded again, so an escape `%XX` in the path becomes `%25XX`.
fn write_canonical_path(out: &mut Vec<u8>, path: &str) {
    // The path as an absolute one is "/" followed by `rest`.
    let rest = path.strip_prefix('/').unwrap_or(path);
    let mut after_slash = true;
    let plain = rest.bytes().all(|b| {
        let dot_or_empty_segment = b == b'.' || b == b'/' && after_slash;
        after_slash = b == b'/';
        !dot_or_empty_segment
    });
    if plain {
        out.push(b'/');
        percent_encode(out, rest.as_bytes(), true);
        return;
    }
    let start = out.len();
    let mut depth = 0usize;
    for segment in rest.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if depth > 0 {
                    // An encoded segment holds no '/': the last one is where it starts.
                    if let Some(at) = out[start..].iter().rposition(|&b| b == b'/') {
                        out.truncate(start + at);
                    }
                    depth -= 1;
                }
            }
            segment => {
                out.push(b'/');
                percent_encode(out, segment.as_bytes(), false);
                depth += 1;
            }
        }
    }
    let ends_with_slash = ["/", "/.", "/./", "/..", "/../"].iter().any(|suffix| {
        // Whether "/" + rest ends with `suffix`.
        rest.ends_with(suffix) || rest.len() + 1 == suffix.len() && suffix[1..] == *rest
    });
    if depth == 0 || ends_with_slash {
        out.push(b'/');
    }
}

/// One query name or value decoded as `form_urlencoded` decodes it, then encoded again.
fn encode_form_component(out: &mut Vec<u8>, decoded: &mut Vec<u8>, raw: &[u8]) {
    fn hex_digit(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    decoded.clear();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b == b'+' {
            decoded.push(b' ');
        } else if b == b'%' {
            let escaped = raw
                .get(i..i + 2)
                .and_then(|hex| Some(hex_digit(hex[0])? << 4 | hex_digit(hex[1])?));
            match escaped {
                Some(byte) => {
                    decoded.push(byte);
                    i += 2;
                }
                None => decoded.push(b'%'),
            }
        } else {
            decoded.push(b);
        }
    }
    match std::str::from_utf8(decoded) {
        Ok(text) => percent_encode(out, text.as_bytes(), false),
        Err(_) => percent_encode(out, String::from_utf8_lossy(decoded).as_bytes(), false),
    }
}

/// The listed header names sorted (as lowercase), each with how many times it is listed.
fn header_groups<'a, 'n>(names: &'a [&'n str]) -> impl Iterator<Item = (&'n str, usize)> + 'a {
    let mut i = 0;
    std::iter::from_fn(move || {
        let name = *names.get(i)?;
        let listed = names[i..]
            .iter()
            .take_while(|n| n.eq_ignore_ascii_case(name))
            .count();
        i += listed;
        Some((name, listed))
    })
}

/// The canonical headers and the signed header list. The signer takes each listed name's
/// values (a name listed twice gives its values twice), signs the names that have values,
/// lowercase and sorted, and always `x-amz-date` as the time it was given; it cannot sign a
/// request with no `Host`.
fn write_canonical_headers(
    out: &mut Vec<u8>,
    signed: &mut Vec<u8>,
    headers: &http::HeaderMap,
    names: &mut [&str],
    date_time: &[u8; 16],
) -> Option<()> {
    names.sort_unstable_by(|a, b| lowercase(a).cmp(lowercase(b)));
    // The signed header list, written beside the canonical headers.
    signed.clear();
    for (name, listed) in header_groups(names) {
        let values = headers.get_all(name);
        for value in &values {
            value.to_str().ok()?;
        }
        let is_date = name.eq_ignore_ascii_case("x-amz-date");
        if !is_date && values.iter().next().is_none() {
            if name.eq_ignore_ascii_case("host") {
                return None;
            }
            continue;
        }
        if !signed.is_empty() {
            signed.push(b';');
        }
        signed.extend(lowercase(name));
        if is_date {
            out.extend_from_slice(b"x-amz-date:");
            out.extend_from_slice(date_time);
            out.push(b'\n');
            continue;
        }
        out.extend(lowercase(name));
        out.push(b':');
        let mut first = true;
        for _ in 0..listed {
            for value in &values {
                if !first {
                    out.push(b',');
                }
                first = false;
                write_trimmed(out, value.as_bytes());
            }
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed);
    out.push(b'\n');
    Some(())
}

fn lowercase(name: &str) -> impl Iterator<Item = u8> + '_ {
    name.bytes().map(|b| b.to_ascii_lowercase())
}

/// A header value with leading and trailing spaces removed and each inner run of spaces made
/// one (spaces only: tabs stay, as `aws-sigv4` does).
fn write_trimmed(out: &mut Vec<u8>, value: &[u8]) {
    let start = value.iter().position(|&b| b != b' ').unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    let mut after_space = false;
    for &b in &value[start..end] {
        if b == b' ' && after_space {
            continue;
        }
        after_space = b == b' ';
        out.push(b);
    }
}

/// Lowercase hex of a SHA-256 digest, through a table.
fn hex32(digest: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (pair, &b) in out.chunks_exact_mut(2).zip(digest) {
        pair[0] = HEX_LOWER[usize::from(b >> 4)];
        pair[1] = HEX_LOWER[usize::from(b & 15)];
    }
    out
}

/// Time → `YYYYMMDDTHHMMSSZ`, as bytes; `None` past year 9999.
fn amz_date_bytes(at: SystemTime) -> Option<[u8; 16]> {
    let secs = at.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let days = i64::try_from(secs / 86_400).ok()?;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let year = u64::try_from(year).ok().filter(|y| *y <= 9999)?;
    let mut out = *b"00000000T000000Z";
    let mut put = |range: std::ops::Range<usize>, mut n: u64| {
        for digit in out[range].iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0..4, year);
    put(4..6, u64::from(month));
    put(6..8, u64::from(day));
    put(9..11, rem / 3600);
    put(11..13, rem % 3600 / 60);
    put(13..15, rem % 60);
    Some(out)
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

#[cfg(test)]
fn credentials(key: &Key<'_>) -> Credentials {
    Credentials::new(key.access_key_id, key.secret, None, None, "lambkin")
}

/// The hex signature of a request with exactly `headers` signed, by `aws-sigv4`: nothing is
/// left out (the signer's default leaves out `user-agent` and others) or added but
/// `x-amz-date`, which the client signed too. What the verifier computes is held to this.
#[cfg(test)]
fn signature<'a>(
    method: &'a str,
    uri: &'a str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    body: &'a [u8],
    key: &Key<'_>,
    region: &str,
    at: SystemTime,
) -> Option<String> {
    use aws_sigv4::http_request::SignatureLocation;
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
    use proptest::prelude::*;

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
        check_with(&Verifier::new(), req, KEY.secret, now)
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
            (
                "AWS4-HMAC-SHA256 Credential=A/20250101/lambda/aws4_request, SignedHeaders=host, Signature=00",
                "valid region",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=A/20250101/us-east-1/lambda/aws4_request/x, SignedHeaders=host, Signature=00",
                "valid region",
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
        assert_eq!(
            Verifier::new().verify(&request, secret, at).unwrap(),
            "AKIDEXAMPLE"
        );
        let request = SignedRequest {
            method: "POST",
            uri,
            headers: &headers,
            body: b"{\"a\":2}",
        };
        assert_eq!(
            Verifier::new().verify(&request, secret, at),
            Err(SignatureError::Mismatch)
        );
    }

    /// What the verifier expects of `request` signed with `secret`, and what `aws-sigv4`
    /// computes for it as the verifier once asked it to.
    fn ours_and_reference(
        request: &SignedRequest<'_>,
        secret: &str,
    ) -> (Option<String>, Option<String>) {
        let header = request.headers["authorization"].to_str().unwrap();
        let signed_at = parse_amz_date(request.headers["x-amz-date"].to_str().unwrap()).unwrap();
        let mut auth = Authorization::parse(header).unwrap();
        let ours = Verifier::new()
            .expected_signature(request, &mut auth, signed_at, secret)
            .map(|hex| String::from_utf8(hex.to_vec()).unwrap());
        (ours, reference_signature(request, secret, signed_at))
    }

    /// The signature `aws-sigv4` computes for `request` as the verifier once had it computed:
    /// the headers its `Authorization` lists, their values as text, at `signed_at`.
    fn reference_signature(
        request: &SignedRequest<'_>,
        secret: &str,
        signed_at: SystemTime,
    ) -> Option<String> {
        let header = request.headers["authorization"].to_str().unwrap();
        let auth = Authorization::parse(header).unwrap();
        let mut headers = Vec::new();
        for name in &auth.signed_headers {
            for value in request.headers.get_all(*name) {
                headers.push((*name, value.to_str().ok()?));
            }
        }
        let key = Key {
            access_key_id: auth.access_key_id,
            secret,
        };
        signature(
            request.method,
            request.uri,
            headers.into_iter(),
            request.body,
            &key,
            auth.region,
            signed_at,
        )
    }

    /// Pieces of a path segment: plain characters, escapes (of '/', '%', bytes of UTF-8, bad
    /// ones), sub-delimiters, raw UTF-8, and characters only `http`'s parser takes (a quote, a
    /// fragment) or refuses (a backquote, a space).
    fn path_piece() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(vec![
            "a", "Z", "9", "-", "_", "~", ".", "%2F", "%2f", "%25", "%41", "%C3%A9", "%E2%82",
            "%zz", "%", "+", ":", "@", "!", "$", "&", "'", "(", ")", "*", ",", ";", "=", "é", "日",
            "😀", "\"", "{", "}", "|", "[", "]", "^", "#f", "`", " ",
        ])
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => Just(String::new()),
            1 => Just(".".to_owned()),
            1 => Just("..".to_owned()),
            1 => Just("...".to_owned()),
            4 => proptest::collection::vec(path_piece(), 1..5).prop_map(|p| p.concat()),
        ]
    }

    /// Pieces of a query name or value: escaped '&', '=' and '+', '+' as a space, bad and
    /// partial escapes, invalid UTF-8 escaped, raw UTF-8, '=' and '?' themselves.
    fn query_piece() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(vec![
            "a",
            "b",
            "Q",
            "0",
            "%26",
            "%3D",
            "%2B",
            "+",
            "%20",
            "%",
            "%4",
            "%zz",
            "%FF",
            "%C3%A9",
            "%c3%a9",
            "é",
            "=",
            "?",
            "/",
            "~",
            "-",
            "*",
            "'",
            "%24LATEST",
            ":",
        ])
    }

    fn query() -> impl Strategy<Value = Option<String>> {
        let component = || proptest::collection::vec(query_piece(), 0..4).prop_map(|p| p.concat());
        // Names from a small set, so that they repeat.
        let name = prop_oneof![
            proptest::sample::select(vec!["a", "b", "Qualifier", "a%20b", ""])
                .prop_map(str::to_owned),
            component(),
        ];
        let param = (name, proptest::option::of(component())).prop_map(|(n, v)| match v {
            Some(v) => format!("{n}={v}"),
            None => n,
        });
        proptest::option::of(proptest::collection::vec(param, 0..6).prop_map(|p| p.join("&")))
    }

    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        let piece = proptest::sample::select(vec![
            " ", "  ", "\t", "a", "B", "7", ",", ":", "\"", "/", ";", "=", "  x  ",
        ]);
        prop_oneof![
            20 => proptest::collection::vec(piece, 0..8).prop_map(|p| p.concat().into_bytes()),
            // Not visible ASCII: no text, so neither side can sign it.
            1 => Just(b"caf\xc3\xa9".to_vec()),
        ]
    }

    /// Headers a request may carry (some more than once) besides its first `host`,
    /// `x-amz-date` and `authorization`.
    const HEADER_POOL: [&str; 7] = [
        "content-type",
        "x-amz-invocation-type",
        "x-custom",
        "x-amz-client-context",
        "authorization",
        "host",
        "x-amz-date",
    ];

    /// A request to sign: method, target, headers (name, value) besides `host` and
    /// `x-amz-date`, the names listed in `SignedHeaders`, body, region, time, secret.
    #[derive(Debug)]
    struct Generated {
        method: &'static str,
        uri: String,
        host: &'static str,
        headers: Vec<(&'static str, Vec<u8>)>,
        signed_headers: Vec<String>,
        body: Vec<u8>,
        region: &'static str,
        amz_date: String,
        secret: &'static str,
    }

    fn generated() -> impl Strategy<Value = Generated> {
        let method =
            proptest::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]);
        let uri = (
            proptest::collection::vec(segment(), 0..6),
            any::<bool>(),
            query(),
        )
            .prop_map(|(segments, trailing, query)| {
                let mut uri = format!("/{}", segments.join("/"));
                if trailing {
                    uri.push('/');
                }
                if let Some(query) = query {
                    uri.push('?');
                    uri.push_str(&query);
                }
                uri
            });
        let host = proptest::sample::select(vec!["127.0.0.1:3001", " example.com ", "a  b"]);
        let headers = proptest::collection::vec(
            (
                proptest::sample::select(HEADER_POOL.to_vec()),
                header_value(),
            ),
            0..6,
        );
        // Listed: host and x-amz-date, some of the others (present or not), some in
        // uppercase, some twice, an empty name now and then; in any order.
        let listed = proptest::sample::subsequence(
            vec![
                "content-type",
                "Content-Type",
                "x-amz-invocation-type",
                "x-custom",
                "x-amz-client-context",
                "authorization",
                "host",
                "X-Amz-Date",
                "",
                "x-absent",
            ],
            0..=10,
        )
        .prop_flat_map(|mut names| {
            names.extend(["host", "x-amz-date"]);
            Just(names.into_iter().map(str::to_owned).collect::<Vec<_>>()).prop_shuffle()
        });
        let body = proptest::collection::vec(any::<u8>(), 0..200);
        let region =
            proptest::sample::select(vec!["us-east-1", "eu-west-1", "ap-southeast-2", "x"]);
        // 2020 to 2030; now and then a leap second, which the signer formats as the next one.
        let amz_date = (1_577_836_800u64..1_893_456_000, any::<u8>()).prop_map(|(secs, leap)| {
            let text = format_amz_date(UNIX_EPOCH + Duration::from_secs(secs));
            if leap < 16 {
                format!("{}60Z", &text[..13])
            } else {
                text
            }
        });
        let secret = proptest::sample::select(vec![KEY.secret, "s", "another/secret+key="]);
        (
            (method, uri, host, headers, listed),
            (body, region, amz_date, secret),
        )
            .prop_map(
                |(
                    (method, uri, host, headers, signed_headers),
                    (body, region, amz_date, secret),
                )| {
                    Generated {
                        method,
                        uri,
                        host,
                        headers,
                        signed_headers,
                        body,
                        region,
                        amz_date,
                        secret,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn the_expected_signature_is_the_one_aws_sigv4_computes(g in generated()) {
            let mut headers = http::HeaderMap::new();
            headers.insert("host", http::HeaderValue::from_static(g.host));
            headers.insert("x-amz-date", g.amz_date.parse().unwrap());
            // The Authorization first: the verifier reads the first one; others may be
            // listed and signed too.
            headers.insert(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{}/{}/lambda/aws4_request, \
                     SignedHeaders={}, Signature=00",
                    &g.amz_date[..8],
                    g.region,
                    g.signed_headers.join(";")
                )
                .parse()
                .unwrap(),
            );
            for (name, value) in &g.headers {
                headers.append(*name, http::HeaderValue::from_bytes(value).unwrap());
            }
            let request = SignedRequest {
                method: g.method,
                uri: &g.uri,
                headers: &headers,
                body: &g.body,
            };
            let (ours, reference) = ours_and_reference(&request, g.secret);
            prop_assert_eq!(ours, reference, "{:?}", g);
        }
    }

    /// The one verifier of the signing property test: kept keys are shared between cases.
    static VERIFIER: std::sync::LazyLock<Verifier> = std::sync::LazyLock::new(Verifier::new);

    /// A target `http` takes (so that a request can be built and signed), with no dot
    /// segments (so that any change to a letter changes the canonical path).
    fn signable_uri() -> impl Strategy<Value = String> {
        let piece = proptest::sample::select(vec![
            "a", "Z", "9", "-", "_", "~", "%2F", "%25", "%C3%A9", "+", ":", "@", "!", "$", "'",
            "(", ")", "*", ",", ";", "=", "é",
        ]);
        let segment =
            proptest::collection::vec(piece, 1..4).prop_map(|p| format!("v{}", p.concat()));
        (proptest::collection::vec(segment, 1..5), query()).prop_map(|(segments, query)| {
            let mut uri = format!("/{}", segments.join("//"));
            if let Some(query) = query {
                uri.push('?');
                uri.push_str(&query);
            }
            uri
        })
    }

    #[derive(Debug, Clone, Copy)]
    enum Change {
        Body,
        Path,
        HeaderValue,
        Signature,
    }

    /// `text` with its `which`-th ASCII letter or digit changed to another one.
    fn change_alphanumeric(text: &str, which: proptest::sample::Index) -> String {
        let at: Vec<usize> = text
            .bytes()
            .enumerate()
            .filter(|(_, b)| b.is_ascii_alphanumeric())
            .map(|(i, _)| i)
            .collect();
        let i = at[which.index(at.len())];
        let mut bytes = text.as_bytes().to_vec();
        bytes[i] = match bytes[i] {
            b'z' => b'a',
            b'Z' => b'A',
            b'9' => b'0',
            b => b + 1,
        };
        String::from_utf8(bytes).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_request_signed_by_the_sdk_signer_verifies_and_no_byte_can_change(
            uri in signable_uri(),
            value in proptest::collection::vec(
                proptest::sample::select(vec![" ", "  ", "\t", "x", "Y", ",", ":"]), 0..8,
            ).prop_map(|p| format!("v{}", p.concat())),
            body in proptest::collection::vec(any::<u8>(), 1..100),
            region in proptest::sample::select(vec!["us-east-1", "eu-west-1", "eu-north-1"]),
            secret in proptest::sample::select(vec![KEY.secret, "other"]),
            change in proptest::sample::select(vec![
                Change::Body, Change::Path, Change::HeaderValue, Change::Signature,
            ]),
            which in any::<proptest::sample::Index>(),
        ) {
            let now = SystemTime::now();
            let key = Key { access_key_id: KEY.access_key_id, secret };
            let mut req = http::Request::post(uri.as_str())
                .header("host", "127.0.0.1:3001")
                .header("x-custom", value.as_str())
                .body(())
                .unwrap();
            sign_request(&mut req, &body, &key, region, now).unwrap();
            let secret_of = |id: &str| (id == key.access_key_id).then(|| secret.to_owned());
            let uri = req.uri().to_string();
            let request = SignedRequest {
                method: req.method().as_str(),
                uri: &uri,
                headers: req.headers(),
                body: &body,
            };
            prop_assert_eq!(VERIFIER.verify(&request, secret_of, now), Ok(KEY.access_key_id));

            let (mut uri, mut headers, mut body) = (uri.clone(), req.headers().clone(), body);
            match change {
                Change::Body => {
                    let i = which.index(body.len());
                    body[i] ^= 1;
                }
                Change::Path => {
                    let path_len = uri.find('?').unwrap_or(uri.len());
                    let path = change_alphanumeric(&uri[..path_len], which);
                    uri.replace_range(..path_len, &path);
                }
                Change::HeaderValue => {
                    let changed = change_alphanumeric(&value, which);
                    headers.insert("x-custom", changed.parse().unwrap());
                }
                Change::Signature => {
                    let auth = headers["authorization"].to_str().unwrap();
                    let at = auth.find("Signature=").unwrap() + "Signature=".len();
                    let hex = &auth[at..];
                    let i = which.index(hex.len());
                    let flipped = if hex.as_bytes()[i] == b'0' { "1" } else { "0" };
                    let auth = format!("{}{}{}", &auth[..at + i], flipped, &auth[at + i + 1..]);
                    headers.insert("authorization", auth.parse().unwrap());
                }
            }
            let request = SignedRequest {
                method: req.method().as_str(),
                uri: &uri,
                headers: &headers,
                body: &body,
            };
            prop_assert_eq!(
                VERIFIER.verify(&request, secret_of, now),
                Err(SignatureError::Mismatch),
                "{:?} changed", change
            );
        }
    }

    /// `req` (made by `signed_with`) as the verifier takes it, checked by `verifier` with
    /// `secret` as the key's secret.
    fn check_with(
        verifier: &Verifier,
        req: &http::Request<&[u8]>,
        secret: &str,
        now: SystemTime,
    ) -> Result<String, SignatureError> {
        let uri = req.uri().to_string();
        let request = SignedRequest {
            method: req.method().as_str(),
            uri: &uri,
            headers: req.headers(),
            body: req.body(),
        };
        verifier
            .verify(
                &request,
                |id| (id == KEY.access_key_id).then(|| secret.to_owned()),
                now,
            )
            .map(str::to_owned)
    }

    fn signed_with(secret: &str, region: &str, at: SystemTime) -> http::Request<&'static [u8]> {
        let mut req = http::Request::post("/2015-03-31/functions/f/invocations")
            .header("host", "127.0.0.1:3001")
            .body(&b"{}"[..])
            .unwrap();
        let key = Key {
            access_key_id: KEY.access_key_id,
            secret,
        };
        sign_request(&mut req, b"{}", &key, region, at).unwrap();
        req
    }

    #[test]
    fn a_kept_signing_key_is_not_used_once_the_secret_changed() {
        let (verifier, now) = (Verifier::new(), SystemTime::now());
        let old = signed_with("old secret", "us-east-1", now);
        assert!(check_with(&verifier, &old, "old secret", now).is_ok());
        assert!(check_with(&verifier, &old, "old secret", now).is_ok());
        assert_eq!(verifier.kept_keys(), 1);
        // The key id now has another secret: what the old one derived must not verify.
        assert_eq!(
            check_with(&verifier, &old, "new secret", now),
            Err(SignatureError::Mismatch)
        );
        let new = signed_with("new secret", "us-east-1", now);
        assert!(check_with(&verifier, &new, "new secret", now).is_ok());
        assert_eq!(
            check_with(&verifier, &old, "new secret", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verifier.kept_keys(), 1);
    }

    #[test]
    fn more_regions_than_keys_kept_still_verify_and_keep_the_bound() {
        let (verifier, now) = (Verifier::new(), SystemTime::now());
        let regions: Vec<String> = (0..CACHED_KEYS + 4).map(|i| format!("r-{i}")).collect();
        let requests: Vec<_> = regions
            .iter()
            .map(|region| signed_with(KEY.secret, region, now))
            .collect();
        // Twice round: the second finds the first regions' keys forgotten, derives them again.
        for _ in 0..2 {
            for req in &requests {
                assert!(check_with(&verifier, req, KEY.secret, now).is_ok());
                assert!(verifier.kept_keys() <= CACHED_KEYS);
            }
        }
        // A signature made for one region does not verify for another one's scope.
        let mut moved = signed_with(KEY.secret, &regions[0], now);
        let auth = moved.headers()["authorization"].to_str().unwrap();
        let auth = auth.replace("/r-0/", "/r-1/");
        moved
            .headers_mut()
            .insert("authorization", auth.parse().unwrap());
        assert_eq!(
            check_with(&verifier, &moved, KEY.secret, now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn unknown_keys_derive_and_keep_nothing() {
        let (verifier, now) = (Verifier::new(), SystemTime::now());
        let req = signed_with(KEY.secret, "us-east-1", now);
        let uri = req.uri().to_string();
        let request = SignedRequest {
            method: "POST",
            uri: &uri,
            headers: req.headers(),
            body: req.body(),
        };
        assert_eq!(
            verifier.verify(&request, |_| None, now),
            Err(SignatureError::UnknownKey)
        );
        assert_eq!(verifier.kept_keys(), 0);
    }

    #[test]
    fn a_signed_host_that_is_absent_is_a_mismatch_not_a_panic() {
        // aws-sigv4 takes the host from the URI when the request has none, and panics when the
        // URI has no authority either: the verifier refuses such a request instead.
        let now = SystemTime::now();
        let mut req = signed("/2015-03-31/functions", b"{}", now);
        req.headers_mut().remove("host");
        assert_eq!(check(&req, now), Err(SignatureError::Mismatch));
    }

    /// Where verifying one invoke request's signature spends its time, per part, now and as it
    /// was (with `aws-sigv4` computing the expected signature); prints, and asserts only that
    /// both agree, not how fast either is. Run optimised:
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
        let target = req.uri().to_string();
        let request = SignedRequest {
            method: "POST",
            uri: &target,
            headers: req.headers(),
            body,
        };
        let secret_of = |id: &str| (id == KEY.access_key_id).then(|| KEY.secret.to_owned());
        let verifier = Verifier::new();
        let signed_at = parse_amz_date(req.headers()["x-amz-date"].to_str().unwrap()).unwrap();
        let sent = Authorization::parse(&header).unwrap().signature.to_owned();
        // The verification as it was: the header parsed, aws-sigv4's signature compared.
        let mut as_before = || {
            let auth = Authorization::parse(black_box(&header)).unwrap();
            let expected = reference_signature(black_box(&request), KEY.secret, signed_at);
            assert!(constant_time_eq(
                expected.unwrap().as_bytes(),
                auth.signature.as_bytes()
            ));
        };
        assert_eq!(verifier.verify(&request, secret_of, now), Ok("AKIDEXAMPLE"));
        as_before();
        time("verify (whole), a kept Verifier", &mut || {
            black_box(
                verifier
                    .verify(black_box(&request), secret_of, now)
                    .unwrap(),
            );
        });
        time("verify (whole), the key derived each time", &mut || {
            black_box(
                Verifier::new()
                    .verify(black_box(&request), secret_of, now)
                    .unwrap(),
            );
        });
        time("as before: parse + aws-sigv4's signature", &mut as_before);
        time("  Authorization::parse", &mut || {
            black_box(Authorization::parse(black_box(&header)).unwrap());
        });
        // Parsed once: the verifier sorts its SignedHeaders in place, the same each time.
        let mut auth = Authorization::parse(&header).unwrap();
        time("  expected signature, the key kept", &mut || {
            let expected =
                verifier.expected_signature(black_box(&request), &mut auth, signed_at, KEY.secret);
            assert_eq!(&expected.unwrap()[..], sent.as_bytes());
        });
        time("    canonical request and string to sign", &mut || {
            let mut scratch = SCRATCH.take();
            black_box(scratch.write_string_to_sign(
                black_box(&request),
                &mut auth,
                &amz_date_bytes(signed_at).unwrap(),
            ));
            SCRATCH.set(scratch);
        });
        time("    derive_signing_mac (4 HMAC-SHA256, keyed)", &mut || {
            black_box(derive_signing_mac(
                black_box(KEY.secret),
                b"20260101",
                "eu-west-1",
            ));
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
        cold("verify, a kept Verifier, caches taken", &mut || {
            black_box(
                verifier
                    .verify(black_box(&request), secret_of, now)
                    .unwrap(),
            );
        });
        cold("as before, caches taken by other work", &mut as_before);
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
