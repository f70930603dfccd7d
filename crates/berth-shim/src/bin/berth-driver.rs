//! `berth-driver`: the libcontainer side of the shim, a short-lived helper.
//!
//! ```text
//! berth-driver create RUNTIME_ROOT ID BUNDLE   # fds 3 and 4: the container's stdout, stderr
//! berth-driver delete RUNTIME_ROOT ID
//! berth-driver kill RUNTIME_ROOT ID SIGNO
//! berth-driver state RUNTIME_ROOT ID
//! ```
//!
//! `create` creates and starts the container and prints `pid N`; the container's init is
//! a child of this process until it exits, then it is reparented to the shim (a child
//! subreaper), which reaps it. Keeping libcontainer out of the long-lived shim process
//! keeps the shim's memory small (see `docs/ARCHITECTURE.md`, "The shim").
//! Errors go to stderr, one line, with exit status 1.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;

use berth_runtime::driver::{Driver, Stdio};

fn run(args: &[String]) -> Result<String, String> {
    let usage = || {
        "usage: berth-driver create|delete|kill|state RUNTIME_ROOT ID [BUNDLE|SIGNO]".to_string()
    };
    let (verb, root, id) = match args {
        [verb, root, id, ..] => (verb.as_str(), Path::new(root), id.as_str()),
        _ => return Err(usage()),
    };
    let driver = Driver::new(root);
    match (verb, args.get(3)) {
        ("create", Some(bundle)) => {
            // SAFETY: the shim passes the write ends of the container's stdout and stderr
            // pipes as fds 3 and 4 and nothing else owns them in this process.
            let (stdout, stderr) = unsafe { (OwnedFd::from_raw_fd(3), OwnedFd::from_raw_fd(4)) };
            let pid = driver
                .create(
                    id,
                    Path::new(bundle),
                    Stdio {
                        stdin: None,
                        stdout,
                        stderr,
                    },
                )
                .map_err(|e| e.to_string())?;
            if let Err(e) = driver.start(id) {
                let _ = driver.delete(id, true);
                return Err(e.to_string());
            }
            Ok(format!("pid {pid}"))
        }
        ("delete", None) => driver
            .delete(id, true)
            .map(|()| "ok".to_string())
            .map_err(|e| e.to_string()),
        ("kill", Some(sig)) => {
            let sig: i32 = sig
                .parse()
                .map_err(|_| format!("signal {sig:?}: not a number"))?;
            driver
                .kill(id, sig, false)
                .map(|()| "ok".to_string())
                .map_err(|e| e.to_string())
        }
        ("state", None) => driver
            .state(id)
            .map(|s| format!("{} {}", s.status, s.pid.unwrap_or(0)))
            .map_err(|e| e.to_string()),
        _ => Err(usage()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth-driver: {e}");
            ExitCode::FAILURE
        }
    }
}
