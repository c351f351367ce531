//! Certificates and keys for the control plane, made with the `openssl` command: a CA, a serving
//! certificate for kube-apiserver (so clients verify TLS for real) and the service-account key.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::EnvError;

/// Files the control plane is started with.
pub struct Pki {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub service_account_key: PathBuf,
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

/// Writes a CA, a serving certificate for `ip` (and the in-cluster service names) and an RSA
/// service-account signing key into `dir`.
pub fn generate(dir: &Path, ip: &str) -> Result<Pki, EnvError> {
    std::fs::create_dir_all(dir).map_err(|e| EnvError::io(dir, e))?;
    let ext = format!(
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:{ip},IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,\
         DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
    );
    std::fs::write(dir.join("serving.ext"), ext).map_err(|e| EnvError::io(dir, e))?;
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
    Ok(Pki {
        ca_cert: dir.join("ca.crt"),
        serving_cert: dir.join("serving.crt"),
        serving_key: dir.join("serving.key"),
        service_account_key: dir.join("sa.key"),
    })
}
