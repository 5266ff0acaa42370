//! The TLS client configuration for `mqtts://` (mutual TLS, as AWS IoT Core requires): the CA
//! to trust and the device's certificate and private key, all PEM files named in `[mqtt]`.
//!
//! [`client_config`] is both the check `lambkin check-config` and the start run (so a bad or
//! missing file is a configuration error naming it) and what the connection uses.

use std::sync::Arc;

use rumqttc::tokio_rustls::rustls::ClientConfig;

use crate::config::MqttConfig;

/// The ALPN protocol AWS IoT Core needs for MQTT with a client certificate on port 443.
const IOT_CORE_ALPN: &[u8] = b"x-amzn-mqtt-ca";

/// Builds the TLS client configuration of an `mqtts://` connection from the files `config`
/// names. Every error names the key and the file.
pub fn client_config(config: &MqttConfig, port: u16) -> Result<Arc<ClientConfig>, String> {
    let Some(ca) = &config.ca else {
        return Err("mqtt.ca is required with mqtts://".to_owned());
    };
    let roots = crate::pem::roots(Some(ca)).map_err(|e| format!("mqtt.ca {e}"))?;
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let mut tls = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let chain = crate::pem::certificates(cert).map_err(|e| format!("mqtt.cert {e}"))?;
            let private = crate::pem::private_key(key).map_err(|e| format!("mqtt.key {e}"))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| format!("mqtt.key {}: {e}", key.display()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("mqtt.cert and mqtt.key go together".to_owned()),
    };
    if port == 443 {
        tls.alpn_protocols.push(IOT_CORE_ALPN.to_vec());
    }
    Ok(Arc::new(tls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(ca: &Path, cert: Option<&Path>, key: Option<&Path>) -> MqttConfig {
        let mut text = format!("[mqtt]\nurl = \"mqtts://h\"\nca = {:?}\n", ca.display());
        if let Some(cert) = cert {
            text.push_str(&format!("cert = {:?}\n", cert.display()));
        }
        if let Some(key) = key {
            text.push_str(&format!("key = {:?}\n", key.display()));
        }
        crate::config::HostConfig::parse(&text)
            .unwrap()
            .mqtt
            .unwrap()
    }

    #[test]
    fn missing_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = client_config(&config(&missing, None, None), 8883).unwrap_err();
        assert!(
            err.contains("mqtt.ca") && err.contains("missing.pem"),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(&config(&empty, None, None), 8883).unwrap_err();
        assert!(
            err.contains("mqtt.ca") && err.contains("no PEM certificate"),
            "{err}"
        );

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = client_config(&config(&garbage, None, None), 8883).unwrap_err();
        assert!(
            err.contains("mqtt.ca") && err.contains("garbage.pem"),
            "{err}"
        );
    }
}
