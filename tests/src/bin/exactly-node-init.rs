//! PID 1 of the real node's PID namespace (`unshare --pid --fork --kill-child … exactly-node-init
//! -- bash node.sh`): runs the node script, reaps every process that is reparented to it
//! (containerd's shims daemonize), and passes SIGTERM and SIGINT on to the script. When the
//! script ends, this process ends and the kernel kills whatever is left in the namespace —
//! containerd, kubelet, shims and every container — so a node never outlives its environment.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

static SCRIPT: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = SCRIPT.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; a negative pid signals the script's group.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: exactly-node-init -- PROGRAM [ARGS...]");
        return ExitCode::from(2);
    };
    let mut command = Command::new(program);
    command.args(rest).process_group(0);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("exactly-node-init: cannot run {program}: {e}");
            return ExitCode::from(127);
        }
    };
    let script = i32::try_from(child.id()).unwrap_or(0);
    SCRIPT.store(script, Ordering::SeqCst);
    // SAFETY: installing a handler that only calls kill(2) on an atomically read pid.
    unsafe {
        libc::signal(libc::SIGTERM, forward as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, forward as *const () as libc::sighandler_t);
    }
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) with a valid out-pointer; -1 reaps any child, reparented or ours.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return ExitCode::from(1);
        }
        if pid == script {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
    }
}
