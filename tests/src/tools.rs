//! Where `make tools` put the pinned binaries. The versions come from `tools/versions.env`, the
//! same file `tools/install.sh` reads, so the harness and the installer cannot disagree.

use std::path::{Path, PathBuf};

use crate::EnvError;

const VERSIONS: &str = include_str!("../../tools/versions.env");

/// A pinned version from `tools/versions.env`.
pub fn version(key: &str) -> &'static str {
    VERSIONS
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .unwrap_or("unknown")
}

/// The cache `make tools` installs into: `$EXACTLY_TOOLS_DIR`, else `~/.cache/exactly`.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EXACTLY_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache/exactly")
}

/// Paths to every binary of the environment.
#[derive(Clone, Debug)]
pub struct Tools {
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kubectl: PathBuf,
    pub etcd: PathBuf,
    pub kwok: PathBuf,
    /// kwok's Stage policies (nodes, pods, volumes), from the pinned kwok release.
    pub kwok_stages: PathBuf,
    /// The `kwok-volume` StorageClass whose claims kwok binds.
    pub kwok_storage_class: PathBuf,
    pub helm: PathBuf,
    /// Directory of the Kafka broker's jars (the classpath is `<dir>/*`).
    pub kafka_libs: PathBuf,
    pub kafka_version: String,
}

fn existing(path: PathBuf, what: String) -> Result<PathBuf, EnvError> {
    if path.exists() {
        Ok(path)
    } else {
        Err(EnvError::ToolMissing { what, path })
    }
}

impl Tools {
    /// Finds every tool, or says which is missing and that `make tools` installs it.
    pub fn locate() -> Result<Tools, EnvError> {
        Self::locate_in(&tools_dir())
    }

    pub fn locate_in(dir: &Path) -> Result<Tools, EnvError> {
        let k8s = version("K8S_VERSION");
        let etcd = version("ETCD_VERSION");
        let kwok = version("KWOK_VERSION");
        let helm = version("HELM_VERSION");
        let kafka = version("KAFKA_VERSION");
        let k8s_bin = dir.join(format!("k8s-v{k8s}/bin"));
        let bin = |name: &str| existing(k8s_bin.join(name), format!("{name} v{k8s}"));
        let kafka_libs = dir.join(format!("kafka-{kafka}/libs"));
        existing(
            kafka_libs.join(format!("kafka_2.13-{kafka}.jar")),
            format!("Apache Kafka {kafka}"),
        )?;
        Ok(Tools {
            kube_apiserver: bin("kube-apiserver")?,
            kube_controller_manager: bin("kube-controller-manager")?,
            kube_scheduler: bin("kube-scheduler")?,
            kubectl: bin("kubectl")?,
            etcd: existing(
                dir.join(format!("etcd-v{etcd}/bin/etcd")),
                format!("etcd v{etcd}"),
            )?,
            kwok: existing(
                dir.join(format!("kwok-v{kwok}/bin/kwok")),
                format!("kwok v{kwok}"),
            )?,
            kwok_stages: existing(
                dir.join(format!("kwok-v{kwok}/stages.yaml")),
                format!("kwok v{kwok} stages"),
            )?,
            kwok_storage_class: existing(
                dir.join(format!("kwok-v{kwok}/storage-class.yaml")),
                format!("kwok v{kwok} storage class"),
            )?,
            helm: existing(
                dir.join(format!("helm-v{helm}/bin/helm")),
                format!("helm v{helm}"),
            )?,
            kafka_libs,
            kafka_version: kafka.to_string(),
        })
    }

    /// Java classpath of the Kafka broker and its tools.
    pub fn kafka_classpath(&self) -> String {
        format!("{}/*", self.kafka_libs.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_installer_pins() {
        assert!(version("K8S_VERSION").starts_with("1."));
        assert!(version("KAFKA_VERSION").starts_with("4."));
        assert_eq!(version("NO_SUCH_KEY"), "unknown");
    }

    #[test]
    fn a_missing_tool_names_make_tools() {
        let err = Tools::locate_in(Path::new("/nonexistent-exactly-tools"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("make tools"), "{err}");
    }
}
