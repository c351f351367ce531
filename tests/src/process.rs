//! Component processes: started with their output in a log file, in their own process group (so
//! a Ctrl-C reaches the harness, which stops them in order), and with a parent-death signal, so
//! none outlives the harness even when it is killed outright.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::EnvError;

/// A running component of the environment.
pub struct Component {
    pub name: &'static str,
    pub log: PathBuf,
    child: Child,
}

impl Component {
    /// Starts `command` with stdout and stderr in `log`.
    ///
    /// The parent-death signal fires when the *thread* that started the process ends, so the
    /// environment starts every component from one thread that lives as long as it does.
    pub fn spawn(
        name: &'static str,
        mut command: Command,
        log: &Path,
    ) -> Result<Component, EnvError> {
        let out = File::create(log).map_err(|e| EnvError::io(log, e))?;
        let err = out.try_clone().map_err(|e| EnvError::io(log, e))?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: only async-signal-safe calls (setpgid, prctl, getppid) run between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::setpgid(0, 0);
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("parent exited during spawn"));
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| EnvError::Start {
            component: name,
            detail: format!("cannot execute {:?}: {e}", command.get_program()),
        })?;
        Ok(Component {
            name,
            log: log.to_path_buf(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some((succeeded, description))` once the process has exited.
    pub fn exited(&mut self) -> Option<(bool, String)> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some((status.success(), status.to_string())),
            Ok(None) => None,
            Err(e) => Some((false, format!("unknown ({e})"))),
        }
    }

    /// Last `lines` lines of the component's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    fn signal(&self, signal: libc::c_int) {
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid; a stale pid is impossible while `child` is
        // unreaped (the kernel keeps the pid of a zombie reserved).
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Asks the process to stop.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits until `deadline` for the process to exit, then kills it; reaps it in every case.
    pub fn wait_or_kill(&mut self, deadline: Instant) {
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Last `lines` lines of a file (reads at most its last 64 KiB).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_ok() {
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
