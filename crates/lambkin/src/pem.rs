//! PEM files for the host's TLS clients (the MQTT connection, the IoT credentials provider,
//! remote targets): certificates, a private key, and the CA roots to trust. One reader, on
//! rustls's own PEM parser; every error names the file.

use std::path::{Path, PathBuf};

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::RootCertStore;

/// Why a PEM file cannot be used. Its `Display` starts with the file's path; callers put the
/// configuration key that named the file in front.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: bad PEM: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no PEM private key (PKCS #8, PKCS #1 or SEC1) usable in the file ({reason})", path.display())]
    NoPrivateKey { path: PathBuf, reason: String },
    #[error("{}: not a usable CA certificate: {reason}", path.display())]
    NotCa { path: PathBuf, reason: String },
    #[error("cannot read the system's CA certificates: {0}")]
    SystemRoots(std::io::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of a PEM file, in order; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Malformed {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS #8, PKCS #1 RSA or SEC1 EC).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| PemError::NoPrivateKey {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The roots to trust: every certificate of `ca`, or the system's when there is none.
pub fn roots(ca: Option<&Path>) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(ca) => {
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| PemError::NotCa {
                    path: ca.to_owned(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs().map_err(PemError::SystemRoots)?;
            roots.add_parsable_certificates(native);
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_problem_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = certificates(&missing).unwrap_err();
        assert!(matches!(e, PemError::Read { .. }), "{e}");
        assert!(e.to_string().starts_with(&missing.display().to_string()));

        let text = dir.path().join("text.pem");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let e = certificates(&text).unwrap_err();
        assert!(matches!(e, PemError::NoCertificate { .. }), "{e}");
        let e = private_key(&text).unwrap_err();
        assert!(matches!(e, PemError::NoPrivateKey { .. }), "{e}");
        assert!(e.to_string().contains("text.pem"), "{e}");

        // Base64 that is no certificate: parsed as PEM, refused as a CA.
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert_eq!(certificates(&garbage).unwrap().len(), 1);
        let e = roots(Some(&garbage)).unwrap_err();
        assert!(matches!(e, PemError::NotCa { .. }), "{e}");
        assert!(e.to_string().contains("garbage.pem"), "{e}");
    }
}
