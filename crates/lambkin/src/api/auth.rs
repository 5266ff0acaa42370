//! Who may call the Lambda API. Every request to it is verified as AWS verifies one: a
//! Signature Version 4 with a key the host knows (its own key in `ROOT/state/credentials`, or a
//! component's key, see `access`), or, in development mode (`[api] auth = "none"`, loopback
//! only), no signature but no browser either: a request with an `Origin`, a cross-site
//! `Sec-Fetch-Site` or a `Host` that is not the listener's is refused, so neither a web page
//! nor a DNS-rebound name reaches the API.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use http::request::Parts;

use lambkin_proto::lambda::error::ApiError;
use lambkin_proto::lambda::sigv4::{self, SignatureError, SignedRequest};

use crate::config::ApiAuth;

/// No `Origin` and no cross-site `Sec-Fetch-Site`: not a request a web page made.
pub fn not_cross_site(parts: &Parts) -> Result<(), ApiError> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = header("origin") {
        return Err(ApiError::AccessDenied(format!(
            "a request from a web page (Origin {origin}) is refused: the API takes no cross-site requests"
        )));
    }
    if let Some(site) = header("sec-fetch-site").filter(|s| *s != "none" && *s != "same-origin") {
        return Err(ApiError::AccessDenied(format!(
            "a {site} request from a browser is refused"
        )));
    }
    Ok(())
}

/// Whom a verified request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The host's own key (or any caller in development mode): every operation.
    Host,
    /// A component's key: what its `accessControl` grants.
    Component(String),
}

/// The access keys the API accepts, by access key id. Shared with the engine, which adds a
/// component's key when it starts the component and removes it when the component goes.
#[derive(Debug, Default)]
pub struct Keys {
    by_id: RwLock<HashMap<String, (String, Principal)>>,
}

impl Keys {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    pub fn insert(&self, access_key_id: String, secret: String, principal: Principal) {
        if let Ok(mut keys) = self.by_id.write() {
            keys.insert(access_key_id, (secret, principal));
        }
    }

    /// Forgets every key of `principal`.
    pub fn revoke(&self, principal: &Principal) {
        if let Ok(mut keys) = self.by_id.write() {
            keys.retain(|_, (_, p)| p != principal);
        }
    }

    fn lookup(&self, access_key_id: &str) -> Option<(String, Principal)> {
        self.by_id.read().ok()?.get(access_key_id).cloned()
    }

    fn knows(&self, access_key_id: &str) -> bool {
        self.by_id
            .read()
            .is_ok_and(|keys| keys.contains_key(access_key_id))
    }
}

/// What [`Gate::precheck`] read of a request: its parsed `Authorization` in signed mode.
#[derive(Debug)]
pub struct Prechecked<'p>(Option<sigv4::Authorization<'p>>);

/// The API's gate: signed (the default) or development mode.
#[derive(Debug)]
pub struct Gate {
    mode: ApiAuth,
    keys: Arc<Keys>,
    /// Keeps the signing keys it derived, for the host's life: a request costs no derivation.
    verifier: sigv4::Verifier,
    /// The listener's bound address: development mode accepts only this as `Host`.
    listening: SocketAddr,
}

impl Gate {
    pub fn new(mode: ApiAuth, keys: Arc<Keys>, listening: SocketAddr) -> Self {
        Self {
            mode,
            keys,
            verifier: sigv4::Verifier::new(),
            listening,
        }
    }

    /// What can be checked before the body is read: in signed mode a signature from a known
    /// key must be there (so an unknown caller cannot make the host buffer a body), in
    /// development mode the request must not come from a browser or through a foreign name.
    /// In signed mode, the parsed `Authorization` goes on to [`Gate::verify`], so the
    /// header is read once.
    pub fn precheck<'p>(&self, parts: &'p Parts) -> Result<Prechecked<'p>, ApiError> {
        match self.mode {
            ApiAuth::Sigv4 => {
                let auth = sigv4::authorization(&parts.headers)?;
                if !self.keys.knows(auth.access_key_id) {
                    return Err(SignatureError::UnknownKey.into());
                }
                Ok(Prechecked(Some(auth)))
            }
            ApiAuth::None => self.not_a_browser(parts).map(|()| Prechecked(None)),
        }
    }

    /// Verifies the whole request, which [`Gate::precheck`] passed before its body was read;
    /// returns whom it comes from.
    pub fn verify<'p>(
        &self,
        parts: &'p Parts,
        body: &[u8],
        checked: Prechecked<'p>,
    ) -> Result<Principal, ApiError> {
        match (self.mode, checked.0) {
            (ApiAuth::Sigv4, Some(auth)) => {
                let uri = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
                let request = SignedRequest {
                    method: parts.method.as_str(),
                    uri,
                    headers: &parts.headers,
                    body,
                };
                let mut principal = None;
                self.verifier.verify_parsed(
                    &request,
                    auth,
                    |id| {
                        let (secret, p) = self.keys.lookup(id)?;
                        principal = Some(p);
                        Some(secret)
                    },
                    SystemTime::now(),
                )?;
                principal.ok_or_else(|| SignatureError::UnknownKey.into())
            }
            (ApiAuth::Sigv4, None) => Err(SignatureError::Missing.into()),
            (ApiAuth::None, _) => Ok(Principal::Host),
        }
    }

    /// No `Origin`, no cross-site `Sec-Fetch-Site`, and a `Host` naming this listener.
    pub fn not_a_browser(&self, parts: &Parts) -> Result<(), ApiError> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        not_cross_site(parts)?;
        let host = header("host").unwrap_or("");
        if !self.is_own_host(host) {
            return Err(ApiError::AccessDenied(format!(
                "Host {host:?} is not this listener's address ({}): refused",
                self.listening
            )));
        }
        Ok(())
    }

    /// `Host` names this listener: its address, or `localhost`, with its port.
    pub fn is_own_host(&self, host: &str) -> bool {
        let port = self.listening.port();
        let Some((name, p)) = host.rsplit_once(':') else {
            return false;
        };
        if p.parse::<u16>().ok() != Some(port) {
            return false;
        }
        let name = name.trim_start_matches('[').trim_end_matches(']');
        name.eq_ignore_ascii_case("localhost")
            || name.parse::<std::net::IpAddr>().is_ok_and(|ip| {
                ip == self.listening.ip() || ip.is_loopback() && self.listening.ip().is_loopback()
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::post("/2015-03-31/functions");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn dev() -> Gate {
        Gate::new(
            ApiAuth::None,
            Keys::new(),
            "127.0.0.1:3001".parse().unwrap(),
        )
    }

    #[test]
    fn development_mode_refuses_browsers_and_foreign_names() {
        let gate = dev();
        assert!(gate.precheck(&parts(&[("host", "127.0.0.1:3001")])).is_ok());
        assert!(gate.precheck(&parts(&[("host", "localhost:3001")])).is_ok());
        for refused in [
            vec![
                ("host", "127.0.0.1:3001"),
                ("origin", "http://evil.example"),
            ],
            vec![("host", "127.0.0.1:3001"), ("sec-fetch-site", "cross-site")],
            vec![("host", "evil.example:3001")],
            vec![("host", "127.0.0.1:3002")],
            vec![("host", "127.0.0.1")],
            vec![],
        ] {
            let err = gate.precheck(&parts(&refused)).unwrap_err();
            assert_eq!(err.status(), 403, "{refused:?}");
        }
    }

    #[test]
    fn signed_mode_needs_a_known_key_before_the_body() {
        let keys = Keys::new();
        keys.insert("LKIAKNOWN".into(), "secret".into(), Principal::Host);
        let gate = Gate::new(
            ApiAuth::Sigv4,
            keys.clone(),
            "127.0.0.1:3001".parse().unwrap(),
        );
        let auth = |id: &str| {
            format!("AWS4-HMAC-SHA256 Credential={id}/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
        };
        let code = |p: Parts| gate.precheck(&p).unwrap_err().code();
        assert_eq!(code(parts(&[])), "MissingAuthenticationTokenException");
        assert_eq!(
            code(parts(&[("authorization", &auth("LKIAOTHER"))])),
            "UnrecognizedClientException"
        );
        assert!(gate
            .precheck(&parts(&[("authorization", &auth("LKIAKNOWN"))]))
            .is_ok());
        keys.revoke(&Principal::Host);
        assert_eq!(
            code(parts(&[("authorization", &auth("LKIAKNOWN"))])),
            "UnrecognizedClientException"
        );
    }

    /// What the API does with a request: precheck, then verify with the body.
    fn verified(gate: &Gate, parts: &Parts, body: &[u8]) -> Result<Principal, ApiError> {
        gate.verify(parts, body, gate.precheck(parts)?)
    }

    #[test]
    fn a_key_given_a_new_secret_refuses_what_the_old_one_signed() {
        let keys = Keys::new();
        let gate = Gate::new(
            ApiAuth::Sigv4,
            keys.clone(),
            "127.0.0.1:3001".parse().unwrap(),
        );
        let now = SystemTime::now();
        let signed = |secret: &str| {
            let mut req = http::Request::post("/2015-03-31/functions")
                .header("host", "127.0.0.1:3001")
                .body(())
                .unwrap();
            let key = sigv4::Key {
                access_key_id: "LKIAROTATED",
                secret,
            };
            sigv4::sign_request(&mut req, b"{}", &key, "us-east-1", now).unwrap();
            req.into_parts().0
        };
        let component = Principal::Component("c".into());
        keys.insert("LKIAROTATED".into(), "first".into(), component.clone());
        let old = signed("first");
        assert_eq!(verified(&gate, &old, b"{}").unwrap(), component);
        // The gate keeps the signing key it derived; the key id now has another secret.
        keys.insert("LKIAROTATED".into(), "second".into(), component.clone());
        assert_eq!(
            verified(&gate, &old, b"{}").unwrap_err().code(),
            "InvalidSignatureException"
        );
        assert_eq!(
            verified(&gate, &signed("second"), b"{}").unwrap(),
            component
        );
        keys.revoke(&component);
        assert_eq!(
            verified(&gate, &signed("second"), b"{}")
                .unwrap_err()
                .code(),
            "UnrecognizedClientException"
        );
    }
}
