//! Certificates and keys for the control plane and the broker, made with the `openssl` command: a
//! CA, a serving certificate for kube-apiserver (so clients verify TLS for real), the
//! service-account key, and a server certificate for the Kafka broker's SASL_SSL listener.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::EnvError;

/// Files the control plane and the broker are started with.
pub struct Pki {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub service_account_key: PathBuf,
    /// The broker's PEM key store: its unencrypted PKCS#8 private key, then its certificate
    /// (for the environment's IP and `localhost`, signed by the CA) and the CA certificate. Kafka
    /// reads it with `ssl.keystore.type=PEM` and no password.
    pub kafka_keystore: PathBuf,
}

impl Pki {
    /// Where [`generate`] writes each file in `dir`, known before it runs (the broker's config
    /// is written while the certificates are still being made).
    pub fn in_dir(dir: &Path) -> Pki {
        Pki {
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("serving.crt"),
            serving_key: dir.join("serving.key"),
            service_account_key: dir.join("sa.key"),
            kafka_keystore: dir.join("kafka-keystore.pem"),
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), EnvError> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| {
            EnvError::Setup(format!(
                "cannot run openssl (install it: apt-get install openssl): {e}"
            ))
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(EnvError::Setup(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

fn read(path: &Path) -> Result<String, EnvError> {
    std::fs::read_to_string(path).map_err(|e| EnvError::io(path, e))
}

/// Writes a self-signed CA (`ca.crt`, `ca.key`) into `dir`, for [`issue`] to sign with.
pub fn ca(dir: &Path) -> Result<(), EnvError> {
    std::fs::create_dir_all(dir).map_err(|e| EnvError::io(dir, e))?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "3650",
                "-subj",
                "/CN=exactly-testenv-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    )?;
    Ok(())
}

/// Writes a CA, a serving certificate for `ip` and `kubernetes_service_ip` (and the in-cluster
/// service names), an RSA service-account signing key and the broker's key store (certificate
/// for `ip`) into `dir`.
pub fn generate(dir: &Path, ip: &str, kubernetes_service_ip: &str) -> Result<Pki, EnvError> {
    std::fs::create_dir_all(dir).map_err(|e| EnvError::io(dir, e))?;
    let pki = Pki::in_dir(dir);
    let ext = format!(
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:{ip},IP:{kubernetes_service_ip},DNS:localhost,DNS:kubernetes,\
         DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
    );
    std::fs::write(dir.join("serving.ext"), ext).map_err(|e| EnvError::io(dir, e))?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    ca(dir)?;
    openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "serving.key",
                "-out",
                "serving.csr",
                "-subj",
                "/CN=kube-apiserver",
            ],
        ]
        .concat(),
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "serving.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "serving.crt",
            "-days",
            "3650",
            "-extfile",
            "serving.ext",
        ],
    )?;
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "sa.key",
        ],
    )?;
    generate_kafka_keystore(dir, ip, &ec, &pki.kafka_keystore)?;
    Ok(pki)
}

/// The broker's server certificate for `ip` and `localhost`, signed by the CA in `dir`, written
/// with its key and the chain as one PEM key store at `keystore`.
fn generate_kafka_keystore(
    dir: &Path,
    ip: &str,
    key_params: &[&str],
    keystore: &Path,
) -> Result<(), EnvError> {
    let ext = format!(
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:{ip},DNS:localhost\n"
    );
    std::fs::write(dir.join("kafka.ext"), ext).map_err(|e| EnvError::io(dir, e))?;
    openssl(
        dir,
        &[
            &["req"][..],
            key_params,
            &[
                "-keyout",
                "kafka.key",
                "-out",
                "kafka.csr",
                "-subj",
                "/CN=kafka",
            ],
        ]
        .concat(),
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "kafka.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "kafka.crt",
            "-days",
            "3650",
            "-extfile",
            "kafka.ext",
        ],
    )?;
    // `req -nodes` writes the key unencrypted but, depending on the openssl version, in its
    // traditional form; Kafka's PEM key store reads only PKCS#8 (`BEGIN PRIVATE KEY`).
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "kafka.key",
            "-out",
            "kafka.pk8.key",
        ],
    )?;
    let keystore_pem = [
        read(&dir.join("kafka.pk8.key"))?,
        read(&dir.join("kafka.crt"))?,
        read(&dir.join("ca.crt"))?,
    ]
    .concat();
    std::fs::write(keystore, keystore_pem).map_err(|e| EnvError::io(keystore, e))
}

/// Issues a certificate signed by the CA in `dir` (made by [`generate`] first): an EC key at
/// `dir/<name>.key` and the certificate at `dir/<name>.crt` for `subject` (e.g.
/// `/O=system:nodes/CN=system:node:exactly-node`), a client certificate when `server_sans` is
/// empty, else a server certificate for those subject alternative names (`IP:…`, `DNS:…`).
pub fn issue(
    dir: &Path,
    name: &str,
    subject: &str,
    server_sans: &[String],
) -> Result<(PathBuf, PathBuf), EnvError> {
    let mut ext = String::from(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
    );
    if server_sans.is_empty() {
        ext.push_str("extendedKeyUsage=clientAuth\n");
    } else {
        ext.push_str(&format!(
            "extendedKeyUsage=serverAuth\nsubjectAltName={}\n",
            server_sans.join(",")
        ));
    }
    let (key, csr, crt, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext).map_err(|e| EnvError::io(dir, e))?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "3650",
            "-extfile",
            &extfile,
        ],
    )?;
    Ok((dir.join(crt), dir.join(key)))
}
