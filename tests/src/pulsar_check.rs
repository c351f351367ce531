//! The tests' Java client for Apache Pulsar: `tools/pulsar/client/PulsarCheck.java`, compiled by
//! `make tools` (`tools/install.sh --print-pulsar-checker` names its classes), run here as a
//! child JVM per call. Pulsar's own Java client does what the Rust `pulsar` crate cannot:
//! transactions, and sends with chosen sequence ids (broker deduplication's key).
//!
//! Each call runs one sub-command (`produce`, `read`, `txn`), waits for it (at most
//! [`RUN_TIMEOUT`]; then the JVM is killed) and returns the JSON line it printed, typed. A
//! failure names the command that ran, its exit status and the tail of its stderr.

use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::EnvError;

const INSTALL_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/install.sh");

/// The exit code of a deliberate crash (`Runtime.halt(137)`: `--exit-after`, `--end open`).
pub const HALTED: i32 = 137;

/// How long one run may take before its JVM is killed (a producer with `sendTimeoutMs=0` waits
/// for the broker forever).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// What `produce` reports.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Produced {
    /// Sends acknowledged by the broker (a duplicate it dropped is acknowledged too).
    pub sent: u64,
    /// `producer.getLastSequenceId()` at the end (or at the crash).
    pub last_sequence_id: i64,
    /// The same right after the producer connected: the broker's deduplication state for the
    /// producer name (the highest sequence id it persisted), -1 when it has none.
    pub last_sequence_id_at_start: i64,
    /// 0, or [`HALTED`] after `--exit-after`.
    #[serde(skip)]
    pub exit_code: i32,
}

/// What `read` reports.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Read {
    /// Messages received (and acknowledged).
    pub received: u64,
    /// Distinct payloads among them.
    pub distinct: u64,
    /// Payloads received more than once (the first 20).
    pub duplicates: Vec<String>,
    /// The first 20 distinct payloads, in arrival order.
    pub payloads: Vec<String>,
}

/// How `txn` ends its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnEnd {
    Commit,
    Abort,
    /// Left open: the JVM halts, as a worker crashing before its commit would.
    Open,
}

impl TxnEnd {
    fn as_str(self) -> &'static str {
        match self {
            TxnEnd::Commit => "commit",
            TxnEnd::Abort => "abort",
            TxnEnd::Open => "open",
        }
    }
}

/// The arguments of `txn`: one consume-transform-produce transaction.
#[derive(Clone, Debug)]
pub struct TxnRun<'a> {
    pub service_url: &'a str,
    pub input: &'a str,
    pub subscription: &'a str,
    pub output: &'a str,
    /// Messages received (and acknowledged in the transaction) from the input, and sent to the
    /// output in it.
    pub count: u32,
    pub end: TxnEnd,
    /// The transaction's timeout (the client's default, 60 s, when `None`).
    pub timeout: Option<Duration>,
}

/// What `txn` reports (printed before the commit or abort, which the exit code confirms).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Txn {
    /// The transaction id, `<most>:<least>` bits.
    pub txn: String,
    pub end: String,
    /// The input payloads it received and acknowledged, in order.
    pub received: Vec<String>,
    /// 0 (ended as asked), or [`HALTED`] for [`TxnEnd::Open`].
    #[serde(skip)]
    pub exit_code: i32,
}

impl Txn {
    /// The transaction id's (most, least) significant bits, as the admin API's
    /// `/admin/v3/transactions/transactionMetadata/{most}/{least}` takes them.
    pub fn id(&self) -> Result<(u64, u64), String> {
        let parse = |s: &str| s.parse::<u64>().map_err(|e| format!("{}: {e}", self.txn));
        let (most, least) = self
            .txn
            .split_once(':')
            .ok_or_else(|| format!("transaction id {:?} is not most:least", self.txn))?;
        Ok((parse(most)?, parse(least)?))
    }

    /// The id as the admin API prints it (`(most,least)`, the keys of `slowTransactions`).
    pub fn admin_id(&self) -> Result<String, String> {
        let (most, least) = self.id()?;
        Ok(format!("({most},{least})"))
    }
}

/// The compiled checker and the classpath it runs with.
#[derive(Clone, Debug)]
pub struct Checker {
    /// The directory of `PulsarCheck.class` (and its `log4j2.properties`).
    pub classes: PathBuf,
    /// The Pulsar standalone's classpath (its client jars included).
    pulsar_classpath: String,
}

static CHECKER: OnceLock<Result<Checker, String>> = OnceLock::new();

/// The checker `make tools` compiled (located once per test binary).
pub fn checker() -> Result<&'static Checker, String> {
    CHECKER
        .get_or_init(|| Checker::locate().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

impl Checker {
    /// Finds the classes `make tools` compiled from this tree's `PulsarCheck.java` (its digest
    /// is in the directory's name, so a stale build is missing, not silently used).
    pub fn locate() -> Result<Checker, EnvError> {
        let classes = PathBuf::from(print_install_dir("--print-pulsar-checker")?);
        let classpath_file = PathBuf::from(print_install_dir("--print-pulsar")?).join("classpath");
        let class = classes.join("PulsarCheck.class");
        if !class.is_file() {
            return Err(EnvError::ToolMissing {
                what: "the tests' Pulsar client (tools/pulsar/client/PulsarCheck.java)".into(),
                path: class,
            });
        }
        let pulsar_classpath = std::fs::read_to_string(&classpath_file)
            .ok()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .ok_or_else(|| EnvError::ToolMissing {
                what: format!("Apache Pulsar {}", crate::pulsar::pinned_version()),
                path: classpath_file,
            })?;
        Ok(Checker {
            classes,
            pulsar_classpath,
        })
    }

    /// `produce`: a producer configured by the properties file `config` (client keys
    /// `serviceUrl`, `authPluginClassName`, `authParams`; every other key is the producer's)
    /// sends `m-<i>` with key `k-<i>` and sequence id `i` for each `i` of `ids`, each send
    /// waiting for its receipt. With `exit_after = Some(k)` the JVM halts right after the k-th
    /// receipt (no close, no flush), exit code [`HALTED`].
    pub fn produce(
        &self,
        config: &Path,
        topic: &str,
        ids: RangeInclusive<u64>,
        exit_after: Option<u64>,
    ) -> Result<Produced, String> {
        let mut args = vec![
            "produce".to_string(),
            "--config".into(),
            config.display().to_string(),
            "--topic".into(),
            topic.into(),
            "--from".into(),
            ids.start().to_string(),
            "--to".into(),
            ids.end().to_string(),
        ];
        if let Some(k) = exit_after {
            args.extend(["--exit-after".into(), k.to_string()]);
        }
        let expected = if exit_after.is_some() { HALTED } else { 0 };
        let (mut produced, exit_code) = self.run::<Produced>(&args, expected)?;
        produced.exit_code = exit_code;
        Ok(produced)
    }

    /// `read`: everything `topic` holds for `subscription` (Exclusive; a new subscription starts
    /// at the earliest message), until nothing arrives for `idle`; each message acknowledged.
    pub fn read(
        &self,
        service_url: &str,
        topic: &str,
        subscription: &str,
        idle: Duration,
    ) -> Result<Read, String> {
        let args = [
            "read",
            "--service-url",
            service_url,
            "--topic",
            topic,
            "--subscription",
            subscription,
            "--idle-ms",
            &idle.as_millis().to_string(),
        ]
        .map(String::from);
        Ok(self.run::<Read>(&args, 0)?.0)
    }

    /// `txn`: one transaction that acknowledges `count` input messages and sends as many to the
    /// output, then ends as `run.end` says.
    pub fn txn(&self, run: &TxnRun<'_>) -> Result<Txn, String> {
        let mut args = [
            "txn",
            "--service-url",
            run.service_url,
            "--input",
            run.input,
            "--subscription",
            run.subscription,
            "--output",
            run.output,
            "--count",
            &run.count.to_string(),
            "--end",
            run.end.as_str(),
        ]
        .map(String::from)
        .to_vec();
        if let Some(timeout) = run.timeout {
            args.extend(["--timeout-ms".into(), timeout.as_millis().to_string()]);
        }
        let expected = if run.end == TxnEnd::Open { HALTED } else { 0 };
        let (mut txn, exit_code) = self.run::<Txn>(&args, expected)?;
        txn.exit_code = exit_code;
        Ok(txn)
    }

    /// `hold`: a consumer of `run.type_` on `run.subscription` receives `run.receive` messages
    /// (acknowledging them only if `run.ack`), stays connected for `run.hold`, then closes.
    /// Blocks until it has: run it on a blocking thread to watch what happens meanwhile.
    pub fn hold(&self, run: &Hold<'_>) -> Result<Held, String> {
        let args = [
            "hold",
            "--service-url",
            run.service_url,
            "--topic",
            run.topic,
            "--subscription",
            run.subscription,
            "--type",
            run.type_,
            "--receive",
            &run.receive.to_string(),
            "--ack",
            if run.ack { "true" } else { "false" },
            "--hold-ms",
            &run.hold.as_millis().to_string(),
        ]
        .map(String::from);
        Ok(self.run::<Held>(&args, 0)?.0)
    }

    /// The JVM for `args`: a small heap, the serial collector and C1 only (a client that runs
    /// for seconds), the checker's classes first (its log4j2.properties wins), then Pulsar's.
    pub fn command(&self, args: &[String]) -> Command {
        let mut c = Command::new("java");
        c.args([
            "-Xmx128m",
            "-XX:MaxDirectMemorySize=128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
            // What Netty (the client's transport) uses on JDK 17 for its direct buffers.
            "--add-opens=java.base/java.nio=ALL-UNNAMED",
            "--add-opens=java.base/jdk.internal.misc=ALL-UNNAMED",
            "-Dio.netty.tryReflectionSetAccessible=true",
        ])
        .arg("-cp")
        .arg(format!(
            "{}:{}",
            self.classes.display(),
            self.pulsar_classpath
        ))
        .arg("PulsarCheck")
        .args(args);
        c
    }

    /// Runs one sub-command and parses the last JSON line of its stdout. Any exit code other
    /// than `expected`, no JSON line, or a timeout is an error with the stderr's tail.
    fn run<T: serde::de::DeserializeOwned>(
        &self,
        args: &[String],
        expected: i32,
    ) -> Result<(T, i32), String> {
        let what = format!("java PulsarCheck {}", args.join(" "));
        let mut command = self.command(args);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls (prctl, getppid) run between fork and exec.
        unsafe {
            command.pre_exec(|| {
                // No JVM outlives the test binary, even when it is killed outright.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("parent exited during spawn"));
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("{what}: cannot run java: {e}"))?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if started.elapsed() > RUN_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!("killed after {RUN_TIMEOUT:?}"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => break Err(format!("waiting for it: {e}")),
            }
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        let fail = |why: String| {
            let mut message = format!(
                "{what}: {why} after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            let _ = write!(message, "; stdout: {:?}", stdout.trim());
            let _ = write!(message, "; stderr, last lines:\n{}", tail(&stderr, 20));
            message
        };
        let status = status.map_err(&fail)?;
        let code = match status.code() {
            Some(code) => code,
            None => return Err(fail(format!("ended by {status}"))),
        };
        if code != expected {
            return Err(fail(format!("exited with {code} (expected {expected})")));
        }
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .ok_or_else(|| fail("printed no JSON line".into()))?;
        let value = serde_json::from_str(line).map_err(|e| fail(format!("{e} in {line:?}")))?;
        Ok((value, code))
    }
}

/// What [`Checker::hold`] runs.
#[derive(Clone, Debug)]
pub struct Hold<'a> {
    pub service_url: &'a str,
    pub topic: &'a str,
    pub subscription: &'a str,
    /// `Exclusive`, `Failover`, `Shared` or `Key_Shared`.
    pub type_: &'a str,
    pub receive: u64,
    pub ack: bool,
    pub hold: Duration,
}

/// What `hold` printed.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    pub received: u64,
    pub held_ms: u64,
}

/// A Java properties file of `entries` (key, value), as the operator renders a client's
/// settings; what the properties format treats specially is escaped.
pub fn write_properties(path: &Path, entries: &[(&str, &str)]) -> Result<(), String> {
    let escape = |s: &str, key: bool| {
        let mut out = String::with_capacity(s.len());
        for (i, c) in s.chars().enumerate() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                ' ' if key || i == 0 => out.push_str("\\ "),
                '=' | ':' | '#' | '!' if key => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out
    };
    let mut text = String::new();
    for (key, value) in entries {
        let _ = writeln!(text, "{}={}", escape(key, true), escape(value, false));
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A thread that reads `pipe` to its end (so a chatty child never blocks on a full pipe).
fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut raw = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut raw);
        }
        String::from_utf8_lossy(&raw).into_owned()
    })
}

/// `tools/install.sh <flag>`'s one line of output.
fn print_install_dir(flag: &str) -> Result<String, EnvError> {
    let output = Command::new("bash")
        .args([INSTALL_SCRIPT, flag])
        .output()
        .map_err(|e| EnvError::Setup(format!("{INSTALL_SCRIPT} {flag}: {e}")))?;
    let line = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || line.is_empty() {
        return Err(EnvError::Setup(format!(
            "{INSTALL_SCRIPT} {flag} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(line)
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_lines_of_the_checker_parse_into_their_types() {
        let produced: Produced = serde_json::from_str(
            r#"{"sent":600,"lastSequenceId":599,"lastSequenceIdAtStart":-1,"halted":137}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (
                produced.sent,
                produced.last_sequence_id,
                produced.last_sequence_id_at_start
            ),
            (600, 599, -1)
        );
        let read: Read = serde_json::from_str(
            r#"{"received":3,"distinct":2,"duplicates":["m-1"],"payloads":["m-0","m-1"]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((read.received, read.distinct), (3, 2));
        assert_eq!(read.duplicates, ["m-1"]);
        let txn: Txn =
            serde_json::from_str(r#"{"txn":"0:12","end":"open","received":["m-0","m-1"]}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(txn.id(), Ok((0, 12)));
        assert_eq!(txn.admin_id().as_deref(), Ok("(0,12)"));
    }

    #[test]
    fn properties_escape_what_the_format_reads_specially() {
        let dir = std::env::temp_dir().join(format!(
            "exactly-props-{:06x}",
            crate::env::random_u64() & 0xff_ffff
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("p.properties");
        write_properties(
            &path,
            &[
                ("serviceUrl", "pulsar://127.0.0.1:6650"),
                ("authParams", r#"{"token":"a\b"}"#),
                ("odd key=", " lead"),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            text,
            "serviceUrl=pulsar://127.0.0.1:6650\nauthParams={\"token\":\"a\\\\b\"}\nodd\\ key\\==\\ lead\n"
        );
    }
}
