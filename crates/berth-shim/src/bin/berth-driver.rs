//! `berth-driver`: the libcontainer side of the shim, a short-lived helper.
//!
//! ```text
//! berth-driver create RUNTIME_ROOT ID BUNDLE [--stdin] [--console-socket PATH] [--wait-start]
//! berth-driver delete RUNTIME_ROOT ID
//! berth-driver kill RUNTIME_ROOT ID SIGNO
//! berth-driver state RUNTIME_ROOT ID
//! ```
//!
//! `create` creates and starts the container and prints `pid N`; the container's init is
//! a child of this process until it exits, then it is reparented to the shim (a child
//! subreaper), which reaps it. Keeping libcontainer out of the long-lived shim process
//! keeps the shim's memory small (see `docs/ARCHITECTURE.md`, "The shim").
//!
//! Stdio of `create`: fds 3 and 4 are the container's stdout and stderr; with `--stdin`
//! fd 5 is its stdin, else its stdin is `/dev/null`. With `--console-socket PATH` (the
//! spec has `terminal: true`) libcontainer sends the pty master to that socket and fds 3
//! and 4 are not used. With `--wait-start` the driver prints `pid N` once the container
//! is created, then reads one line from its stdin: `start` starts the user process and
//! prints `ok`; anything else or EOF deletes the container (exit status 1).
//! Errors go to stderr, one line, with exit status 1.

use std::io::{BufRead, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;

use berth_runtime::driver::{Driver, Stdio};

fn run(args: &[String]) -> Result<String, String> {
    let usage = || {
        "usage: berth-driver create|delete|kill|state RUNTIME_ROOT ID [BUNDLE [--stdin] [--console-socket PATH] [--wait-start]|SIGNO]".to_string()
    };
    let (verb, root, id) = match args {
        [verb, root, id, ..] => (verb.as_str(), Path::new(root), id.as_str()),
        _ => return Err(usage()),
    };
    let driver = Driver::new(root);
    match (verb, args.get(3)) {
        ("create", Some(bundle)) => {
            let (mut stdin_fd, mut console, mut wait_start) = (false, None, false);
            let mut rest = args[4..].iter();
            while let Some(a) = rest.next() {
                match a.as_str() {
                    "--stdin" => stdin_fd = true,
                    "--wait-start" => wait_start = true,
                    "--console-socket" => {
                        console = Some(Path::new(rest.next().ok_or_else(usage)?));
                    }
                    _ => return Err(usage()),
                }
            }
            // SAFETY: the shim passes the write ends of the container's stdout and stderr
            // pipes as fds 3 and 4 (and with --stdin the read end of its stdin pipe as fd
            // 5); nothing else owns them in this process.
            let (stdout, stderr) = unsafe { (OwnedFd::from_raw_fd(3), OwnedFd::from_raw_fd(4)) };
            let stdin = if stdin_fd {
                // SAFETY: as above, fd 5 is the shim's, handed to this process alone.
                unsafe { OwnedFd::from_raw_fd(5) }
            } else {
                // Never the driver's own stdin: with --wait-start that is the shim's pipe.
                std::fs::File::open("/dev/null")
                    .map_err(|e| format!("/dev/null: {e}"))?
                    .into()
            };
            let pid = driver
                .create(
                    id,
                    Path::new(bundle),
                    Stdio {
                        stdin: Some(stdin),
                        stdout,
                        stderr,
                    },
                    console,
                )
                .map_err(|e| e.to_string())?;
            if wait_start {
                let mut out = std::io::stdout();
                let _ = writeln!(out, "pid {pid}");
                let _ = out.flush();
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
                if line.trim() != "start" {
                    let _ = driver.delete(id, true);
                    return Err(format!(
                        "container {id}: not started (start was not requested)"
                    ));
                }
            }
            if let Err(e) = driver.start(id) {
                let _ = driver.delete(id, true);
                return Err(e.to_string());
            }
            Ok(if wait_start {
                "ok".to_string()
            } else {
                format!("pid {pid}")
            })
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
