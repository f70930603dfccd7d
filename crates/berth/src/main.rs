//! berth: the daemon (`berth daemon`) and the CLI, a client of the daemon's Docker
//! Engine API like the docker CLI.

// Tests may unwrap: a panic there is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod cli;
mod client;
mod daemon;
mod format;
mod registry;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // The servers (`berth daemon`, `berth registry serve`) use every core; a client verb
    // waits on a few sockets, which one thread does without a worker pool to start
    // and to hand each wake-up across (a visible part of a short `berth run`).
    let mut builder = if args.is_server() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cli::run(args));
    // A read of stdin may still be parked on a blocking thread; don't wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.chain().any(|c| c.is::<cli::StdoutClosed>()) => {
            // As a Go program killed by SIGPIPE (the docker CLI): quiet, status 141.
            ExitCode::from(141)
        }
        Err(e) => match e.downcast_ref::<cli::StatusError>() {
            Some(s) => {
                if let Some(m) = &s.message {
                    eprintln!("berth: {m}");
                }
                ExitCode::from(u8::try_from(s.code & 0xff).unwrap_or(1))
            }
            None => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
