//! berth-netbench: the server and the clients of `bench/net.sh`, one small binary that runs
//! the same way on the host and (bind-mounted) inside a container, so that the host-network
//! and published-port figures come from identical programs.
//!
//! ```text
//! berth-netbench serve [ADDR:]PORT [THREADS]       # answer on ADDR:PORT until killed
//! berth-netbench connrate HOST PORT SECONDS THREADS  # prints "<conn/s> conn/s ..."
//! berth-netbench tput HOST PORT SECONDS STREAMS      # prints "<Gbit/s> Gbit/s ..."
//! ```
//!
//! Protocol: the first byte a client sends picks the mode.
//! - `R` (request): the server answers one byte. A connrate client then closes; one
//!   "connection" is connect, 1-byte request, 1-byte reply, close. The client closes with
//!   a reset (`SO_LINGER` 0): a graceful close would leave a TIME_WAIT socket per
//!   connection on the client (at 10k+/s the ephemeral ports to one destination run out
//!   within seconds) and a 120 s TIME_WAIT conntrack entry (the table fills over a run).
//! - `T` (throughput): the server reads and discards until end of stream, then answers
//!   the byte count as 8 little-endian bytes. The client writes for SECONDS, shuts down
//!   its side and waits for the count, so the figure is bytes the server really read over
//!   the time until the server had read them all.
//!
//! The server is a fixed pool of threads, each accepting on the shared listener and
//! serving the connection it got to the end: no thread creation per connection.
//! std only, plus `libc` for `SO_LINGER`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage:
  berth-netbench serve [ADDR:]PORT [THREADS]   (ADDR defaults to 0.0.0.0)
  berth-netbench connrate HOST PORT SECONDS THREADS
  berth-netbench tput HOST PORT SECONDS STREAMS";

/// Size of one write of a throughput stream (and of the server's read buffer).
const CHUNK: usize = 128 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve_cmd(&args[1..]),
        Some("connrate") => connrate_cmd(&args[1..]),
        Some("tput") => tput_cmd(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-netbench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    let s = args
        .get(i)
        .ok_or_else(|| format!("missing {what}\n{USAGE}"))?;
    s.parse()
        .map_err(|_| format!("{what} {s:?}: not a valid number"))
}

fn positive(n: u64, what: &str) -> Result<u64, String> {
    if n == 0 {
        return Err(format!("{what} must be at least 1"));
    }
    Ok(n)
}

fn serve_cmd(args: &[String]) -> Result<(), String> {
    let spec = args
        .first()
        .ok_or_else(|| format!("missing PORT\n{USAGE}"))?;
    let (addr, port) = match spec.rsplit_once(':') {
        Some((a, p)) => (a, p),
        None => ("0.0.0.0", spec.as_str()),
    };
    let addr: std::net::IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?}: not an IP address"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("PORT {port:?}: not a valid number"))?;
    let threads = match args.get(1) {
        Some(_) => positive(parse(args, 1, "THREADS")?, "THREADS")?,
        None => 32,
    };
    let listener =
        TcpListener::bind((addr, port)).map_err(|e| format!("listen on {addr}:{port}: {e}"))?;
    eprintln!("berth-netbench: serving on {addr}:{port} with {threads} threads");
    let listener = Arc::new(listener);
    let mut handles = Vec::new();
    for _ in 0..threads {
        let l = Arc::clone(&listener);
        handles.push(std::thread::spawn(move || accept_loop(&l)));
    }
    for h in handles {
        if h.join().is_err() {
            return Err("a server thread panicked".into());
        }
    }
    Ok(())
}

fn accept_loop(listener: &TcpListener) {
    loop {
        match listener.accept() {
            // A client that resets or vanishes only ends its own connection.
            Ok((stream, _)) => {
                let _ = serve_conn(stream);
            }
            Err(e) => {
                eprintln!("berth-netbench: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn serve_conn(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    // A stuck client must not hold a pool thread for ever.
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut mode = [0u8; 1];
    s.read_exact(&mut mode)?;
    match mode[0] {
        b'R' => s.write_all(b"r"),
        b'T' => {
            let mut buf = vec![0u8; CHUNK];
            let mut total: u64 = 0;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            s.write_all(&total.to_le_bytes())
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown mode byte {other:#x}"),
        )),
    }
}

/// The destination, resolved once (so that name lookups are not timed).
fn target(args: &[String]) -> Result<std::net::SocketAddr, String> {
    let host = args
        .first()
        .ok_or_else(|| format!("missing HOST\n{USAGE}"))?;
    let port: u16 = parse(args, 1, "PORT")?;
    (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("{host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port}: no address"))
}

/// Closes with a reset instead of a FIN (see the module doc).
fn set_linger_zero(s: &TcpStream) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is open for the lifetime of `s`; the option value points to a
    // properly initialised `linger` and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn one_request(addr: &std::net::SocketAddr) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    set_linger_zero(&s)?;
    s.write_all(b"R")?;
    let mut reply = [0u8; 1];
    s.read_exact(&mut reply)?;
    Ok(())
}

fn connrate_cmd(args: &[String]) -> Result<(), String> {
    let addr = target(args)?;
    let seconds = positive(parse(args, 2, "SECONDS")?, "SECONDS")?;
    let threads = positive(parse(args, 3, "THREADS")?, "THREADS")?;
    // One request first: a server that is not there is an error, not a rate of 0.
    one_request(&addr).map_err(|e| format!("{addr}: {e}"))?;
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut handles = Vec::new();
    for _ in 0..threads {
        let (done, errors) = (Arc::clone(&done), Arc::clone(&errors));
        handles.push(std::thread::spawn(move || {
            let mut first_error = None;
            while Instant::now() < deadline {
                match one_request(&addr) {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(e);
                    }
                }
            }
            first_error
        }));
    }
    let mut first_error = None;
    for h in handles {
        match h.join() {
            Ok(e) => first_error = first_error.or(e),
            Err(_) => return Err("a client thread panicked".into()),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let errs = errors.load(Ordering::Relaxed);
    println!(
        "{:.1} conn/s ({n} connections in {elapsed:.2} s, {threads} threads, {errs} errors)",
        n as f64 / elapsed
    );
    if let Some(e) = first_error {
        eprintln!("berth-netbench: first error: {e}");
    }
    if n == 0 {
        return Err(format!("{addr}: no connection succeeded"));
    }
    Ok(())
}

/// One throughput stream: the bytes the server counted and when it answered.
fn stream(addr: std::net::SocketAddr, stop: &AtomicBool) -> io::Result<(u64, Instant)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(b"T")?;
    let buf = vec![0x5au8; CHUNK];
    while !stop.load(Ordering::Relaxed) {
        s.write_all(&buf)?;
    }
    s.shutdown(Shutdown::Write)?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count)?;
    Ok((u64::from_le_bytes(count), Instant::now()))
}

fn tput_cmd(args: &[String]) -> Result<(), String> {
    let addr = target(args)?;
    let seconds = positive(parse(args, 2, "SECONDS")?, "SECONDS")?;
    let streams = positive(parse(args, 3, "STREAMS")?, "STREAMS")?;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..streams {
        let stop = Arc::clone(&stop);
        handles.push(std::thread::spawn(move || stream(addr, &stop)));
    }
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut bytes = 0u64;
    let mut end = start;
    for h in handles {
        let (b, t) = h
            .join()
            .map_err(|_| "a stream thread panicked".to_string())?
            .map_err(|e| format!("{addr}: {e}"))?;
        bytes += b;
        end = end.max(t);
    }
    let elapsed = end.duration_since(start).as_secs_f64();
    println!(
        "{:.3} Gbit/s ({bytes} bytes in {elapsed:.2} s, {streams} streams)",
        bytes as f64 * 8.0 / elapsed / 1e9
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A server on an ephemeral loopback port, serving with the real pool loop.
    fn server() -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let l = Arc::new(l);
        for _ in 0..4 {
            let l = Arc::clone(&l);
            std::thread::spawn(move || accept_loop(&l));
        }
        addr
    }

    #[test]
    fn request_gets_one_byte_reply() {
        let addr = server();
        for _ in 0..50 {
            one_request(&addr).unwrap();
        }
    }

    #[test]
    fn throughput_count_is_what_was_sent() {
        let addr = server();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"T").unwrap();
        s.write_all(&vec![1u8; 3 * CHUNK + 17]).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut count = [0u8; 8];
        s.read_exact(&mut count).unwrap();
        assert_eq!(u64::from_le_bytes(count), 3 * CHUNK as u64 + 17);
    }

    #[test]
    fn stream_reports_server_count() {
        let addr = server();
        let stop = AtomicBool::new(true);
        // Stopped from the start: only the mode byte goes out, and the server counts 0.
        let (bytes, _) = stream(addr, &stop).unwrap();
        assert_eq!(bytes, 0);
    }

    #[test]
    fn unknown_mode_closes_connection() {
        let addr = server();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"X").unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(connrate_cmd(&args(&["127.0.0.1", "x", "1", "1"])).is_err());
        assert!(connrate_cmd(&args(&["127.0.0.1", "1", "0", "1"])).is_err());
        assert!(tput_cmd(&args(&["127.0.0.1"])).is_err());
        assert!(serve_cmd(&args(&["70000"])).is_err());
        assert!(serve_cmd(&args(&["localhost:7000"])).is_err());
        assert!(serve_cmd(&args(&["127.0.0.1:x"])).is_err());
    }
}
