//! How the operator authenticates to a cluster: TLS (trusting a given CA, or the system's) and
//! SASL (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`), configured with Kafka's own client property
//! names from the Secret a KafkaCluster names. The SCRAM client (RFC 5802/7677) is pure and
//! tested against the RFC's example exchange.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::{digest, hmac, pbkdf2};

/// `security.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    /// Whether the connection is wrapped in TLS.
    pub fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }
    /// Whether the client authenticates with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// `sasl.mechanism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    /// Kafka's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Connection security for one cluster. `Debug` never shows the password.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Security {
    pub protocol: Protocol,
    /// Mechanism, user name and password, for the SASL protocols.
    pub sasl: Option<(Mechanism, String, String)>,
    /// PEM certificates to trust for TLS; the system's trust store when absent.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol)
            .field(
                "sasl",
                &self.sasl.as_ref().map(|(m, user, _)| (m.name(), user)),
            )
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .finish()
    }
}

impl Security {
    /// Reads the settings from Kafka client properties (a Secret's data): `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.pem`. Every problem is named
    /// with the key to fix.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<Security, String> {
        let get = |key: &str| props.get(key).map(|v| v.trim().to_string());
        let protocol = match get("security.protocol")
            .unwrap_or_else(|| "PLAINTEXT".into())
            .to_ascii_uppercase()
            .as_str()
        {
            "PLAINTEXT" => Protocol::Plaintext,
            "SSL" => Protocol::Ssl,
            "SASL_PLAINTEXT" => Protocol::SaslPlaintext,
            "SASL_SSL" => Protocol::SaslSsl,
            other => {
                return Err(format!(
                    "security.protocol '{other}' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
                ));
            }
        };
        let sasl = if protocol.sasl() {
            let mechanism = match get("sasl.mechanism")
                .unwrap_or_else(|| "PLAIN".into())
                .to_ascii_uppercase()
                .as_str()
            {
                "PLAIN" => Mechanism::Plain,
                "SCRAM-SHA-256" => Mechanism::ScramSha256,
                "SCRAM-SHA-512" => Mechanism::ScramSha512,
                other => {
                    return Err(format!(
                        "sasl.mechanism '{other}' is not supported: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                    ));
                }
            };
            // Not trimmed: a password may begin or end with spaces.
            let username = props.get("sasl.username").cloned().unwrap_or_default();
            let password = props.get("sasl.password").cloned().unwrap_or_default();
            if username.is_empty() || password.is_empty() {
                return Err(format!(
                    "security.protocol {protocol:?} needs sasl.username and sasl.password"
                ));
            }
            Some((mechanism, username, password))
        } else {
            None
        };
        let ca_pem = props
            .get("ssl.ca.pem")
            .filter(|pem| !pem.trim().is_empty())
            .cloned();
        Ok(Security {
            protocol,
            sasl,
            ca_pem,
        })
    }

    /// The TLS client configuration: trusting `ca_pem`, else the system's certificates.
    pub fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_pem {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let cert = cert.map_err(|e| format!("ssl.ca.pem: {e}"))?;
                    roots.add(cert).map_err(|e| format!("ssl.ca.pem: {e}"))?;
                }
                if roots.is_empty() {
                    return Err("ssl.ca.pem holds no certificate".into());
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(
                        "no system CA certificates found: set ssl.ca.pem to the cluster's CA"
                            .into(),
                    );
                }
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// The client side of one SCRAM exchange (RFC 5802), without channel binding.
pub struct Scram {
    mechanism: Mechanism,
    password: String,
    client_nonce: String,
    client_first_bare: String,
}

/// What the client proves and what it expects the server to prove in return.
pub struct ScramFinal {
    /// `client-final-message`.
    pub message: String,
    /// `ServerSignature`, to check the server's final message against.
    server_signature: Vec<u8>,
}

fn escape_username(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

impl Scram {
    /// Starts an exchange with a fresh random nonce.
    pub fn new(mechanism: Mechanism, username: &str, password: &str) -> Result<Scram, String> {
        let mut nonce = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| "no randomness for the SCRAM nonce".to_string())?;
        Ok(Scram::with_nonce(
            mechanism,
            username,
            password,
            &BASE64.encode(nonce),
        ))
    }

    /// Starts an exchange with a given nonce (tests).
    pub fn with_nonce(mechanism: Mechanism, username: &str, password: &str, nonce: &str) -> Scram {
        Scram {
            mechanism,
            password: password.to_string(),
            client_nonce: nonce.to_string(),
            client_first_bare: format!("n={},r={nonce}", escape_username(username)),
        }
    }

    /// `client-first-message`.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Answers `server-first-message`.
    pub fn client_final(&self, server_first: &str) -> Result<ScramFinal, String> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v.to_string()),
                Some(("s=", v)) => {
                    salt = Some(BASE64.decode(v).map_err(|e| format!("SCRAM salt: {e}"))?)
                }
                Some(("i=", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(format!(
                "unexpected SCRAM server-first message '{server_first}'"
            ));
        };
        if !nonce.starts_with(&self.client_nonce) {
            return Err("the server's SCRAM nonce does not extend ours".into());
        }
        let iterations = std::num::NonZeroU32::new(iterations)
            .ok_or_else(|| "SCRAM iteration count 0".to_string())?;
        let (algorithm, hmac_algorithm, digest_algorithm, len) = match self.mechanism {
            Mechanism::ScramSha512 => (
                pbkdf2::PBKDF2_HMAC_SHA512,
                hmac::HMAC_SHA512,
                &digest::SHA512,
                64,
            ),
            _ => (
                pbkdf2::PBKDF2_HMAC_SHA256,
                hmac::HMAC_SHA256,
                &digest::SHA256,
                32,
            ),
        };
        let mut salted = vec![0u8; len];
        pbkdf2::derive(
            algorithm,
            iterations,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let salted_key = hmac::Key::new(hmac_algorithm, &salted);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(digest_algorithm, client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac::sign(
            &hmac::Key::new(hmac_algorithm, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac::sign(&salted_key, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(hmac_algorithm, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        Ok(ScramFinal {
            message: format!("{without_proof},p={}", BASE64.encode(proof)),
            server_signature: server_signature.as_ref().to_vec(),
        })
    }
}

impl ScramFinal {
    /// Checks `server-final-message`: the server proves it knows the password too.
    pub fn verify(&self, server_final: &str) -> Result<(), String> {
        if let Some(error) = server_final.strip_prefix("e=") {
            return Err(format!("SCRAM authentication failed: {error}"));
        }
        let signature = server_final
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or_else(|| format!("unexpected SCRAM server-final message '{server_final}'"))?;
        let signature = BASE64
            .decode(signature)
            .map_err(|e| format!("SCRAM server signature: {e}"))?;
        if signature == self.server_signature {
            Ok(())
        } else {
            Err("the server's SCRAM signature does not match: it does not know the password".into())
        }
    }
}

/// The `PLAIN` mechanism's single message.
pub fn plain_message(username: &str, password: &str) -> Vec<u8> {
    format!("\0{username}\0{password}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn scram_sha_256_matches_the_rfc_7677_example() {
        let scram = Scram::with_nonce(
            Mechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(scram.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = scram.client_final(server_first);
        let last = last.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            last.message,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            last.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Ok(())
        );
        assert!(last.verify("v=AAAA").is_err());
        assert!(last.verify("e=invalid-proof").is_err());
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_is_refused() {
        let scram = Scram::with_nonce(Mechanism::ScramSha256, "user", "pencil", "abc");
        assert!(scram.client_final("r=xyz,s=QQ==,i=4096").is_err());
    }

    #[test]
    fn sasl_ssl_settings_are_read_from_kafka_property_names() {
        let s = Security::from_properties(&props(&[
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "app"),
            ("sasl.password", "secret"),
            ("ssl.ca.pem", "-----BEGIN CERTIFICATE-----"),
        ]));
        let s = s.unwrap_or_default();
        assert_eq!(s.protocol, Protocol::SaslSsl);
        assert_eq!(
            s.sasl,
            Some((Mechanism::ScramSha512, "app".into(), "secret".into()))
        );
        assert!(s.ca_pem.is_some());
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn missing_credentials_and_unknown_values_name_the_key() {
        let e = Security::from_properties(&props(&[("security.protocol", "SASL_SSL")]));
        assert!(e.err().unwrap_or_default().contains("sasl.username"));
        let e = Security::from_properties(&props(&[("security.protocol", "TLS")]));
        assert!(e.err().unwrap_or_default().contains("security.protocol"));
        let e = Security::from_properties(&props(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "GSSAPI"),
            ("sasl.username", "a"),
            ("sasl.password", "b"),
        ]));
        assert!(e.err().unwrap_or_default().contains("sasl.mechanism"));
    }

    #[test]
    fn no_properties_means_plaintext() {
        assert_eq!(
            Security::from_properties(&BTreeMap::new()),
            Ok(Security::default())
        );
    }
}
