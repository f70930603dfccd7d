//! The Docker Engine API client the CLI speaks to the daemon with: hyper 1 over the
//! daemon's unix socket, one connection per request, request bodies streamed from
//! files or stdin, responses read as streams.

use std::fmt;
use std::io;
use std::path::PathBuf;

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, UPGRADE, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::io::AsyncRead;
use tokio::net::UnixStream;

/// A request body: empty, or a stream of chunks.
pub type ReqBody = UnsyncBoxBody<Bytes, io::Error>;

/// The daemon answered with an error status. Prints as the docker CLI prints it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for ApiError {}

/// Nothing answers on the socket (or we may not talk to it).
#[derive(Debug)]
pub struct ConnectError {
    host: String,
    source: io::Error,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.source.kind() == io::ErrorKind::PermissionDenied {
            write!(
                f,
                "permission denied while trying to connect to the berth daemon socket at {}: {}",
                self.host, self.source
            )
        } else {
            write!(
                f,
                "Cannot connect to the berth daemon at {}: is the daemon running?",
                self.host
            )
        }
    }
}

impl std::error::Error for ConnectError {}

/// A client of one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    host: String,
    socket: PathBuf,
}

/// The socket path of a `unix://PATH` host.
pub fn parse_unix_host(host: &str) -> anyhow::Result<PathBuf> {
    let path = match host.split_once("://") {
        Some(("unix", path)) => path,
        Some((_, _)) => anyhow::bail!(
            "unsupported host {host:?}: berth connects to unix sockets only (unix:///path/to/socket)"
        ),
        None if host.starts_with('/') => host,
        None => anyhow::bail!("invalid host {host:?}: expected unix:///path/to/socket"),
    };
    if !path.starts_with('/') {
        anyhow::bail!("invalid host {host:?}: the socket path must be absolute");
    }
    Ok(PathBuf::from(path))
}

impl Client {
    pub fn new(host: &str) -> anyhow::Result<Client> {
        Ok(Client {
            host: host.to_string(),
            socket: parse_unix_host(host)?,
        })
    }

    /// Sends one request. A non-2xx answer becomes an [`ApiError`] carrying the
    /// daemon's message.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: ReqBody,
        content_type: Option<&str>,
    ) -> anyhow::Result<Response<Incoming>> {
        self.request_with(method, path_and_query, body, content_type, &[])
            .await
    }

    /// [`request`](Self::request) with extra headers (`X-Registry-Auth`).
    pub async fn request_with(
        &self,
        method: Method,
        path_and_query: &str,
        body: ReqBody,
        content_type: Option<&str>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<Response<Incoming>> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ConnectError {
                host: self.host.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("talking to the berth daemon at {}", self.host))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "api connection ended");
            }
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, "berth")
            .header(USER_AGENT, concat!("berth-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req.body(body).context("building the request")?;
        let resp = sender
            .send_request(req)
            .await
            .with_context(|| format!("request to the berth daemon at {} failed", self.host))?;
        let status = resp.status();
        // As Docker's client: below 400 is not an error (304: already started/stopped).
        if status.is_client_error() || status.is_server_error() {
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(ApiError {
                status,
                message: error_message(status, &bytes),
            }
            .into());
        }
        Ok(resp)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Response<Incoming>> {
        self.request(Method::GET, path, empty(), None).await
    }

    pub async fn get_bytes(&self, path: &str) -> anyhow::Result<Bytes> {
        read_all(self.get(path).await?).await
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let bytes = self.get_bytes(path).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the daemon's answer to GET {path} is not the expected JSON"))
    }

    pub async fn post(
        &self,
        path: &str,
        body: ReqBody,
        content_type: Option<&str>,
    ) -> anyhow::Result<Response<Incoming>> {
        self.request(Method::POST, path, body, content_type).await
    }

    pub async fn post_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let bytes = read_all(self.post(path, empty(), None).await?).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the daemon's answer to POST {path} is not the expected JSON"))
    }

    /// POSTs a JSON body.
    pub async fn post_body(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<Response<Incoming>> {
        self.post(path, json_body(body), Some("application/json"))
            .await
    }

    /// Opens a hijacked connection as the docker CLI does for attach and exec start:
    /// `Connection: Upgrade`, `Upgrade: tcp`; after the daemon's `101`, the raw
    /// connection carries our stdin one way and the container's output the other. A
    /// daemon that answers `200` instead gives the output as the response body.
    pub async fn hijack(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<Hijacked> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ConnectError {
                host: self.host.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("talking to the berth daemon at {}", self.host))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "hijacked connection ended");
            }
        });
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, "berth")
            .header(USER_AGENT, concat!("berth-cli/", env!("CARGO_PKG_VERSION")))
            .header(CONNECTION, "Upgrade")
            .header(UPGRADE, "tcp");
        let body = match body {
            Some(b) => {
                req = req.header(CONTENT_TYPE, "application/json");
                json_body(b)
            }
            None => empty(),
        };
        let req = req.body(body).context("building the request")?;
        let resp = sender
            .send_request(req)
            .await
            .with_context(|| format!("request to the berth daemon at {} failed", self.host))?;
        let status = resp.status();
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let upgraded = hyper::upgrade::on(resp)
                .await
                .context("the daemon did not hand over the connection")?;
            return Ok(Hijacked::Upgraded(TokioIo::new(upgraded)));
        }
        // As Docker's client: below 400 is not an error (304: already started/stopped).
        if status.is_client_error() || status.is_server_error() {
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(ApiError {
                status,
                message: error_message(status, &bytes),
            }
            .into());
        }
        Ok(Hijacked::Body(resp.into_body()))
    }

    pub async fn delete_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let bytes = read_all(self.request(Method::DELETE, path, empty(), None).await?).await?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!("the daemon's answer to DELETE {path} is not the expected JSON")
        })
    }
}

/// The message of an error answer: `{"message": "..."}`, else the text, else the status.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Msg {
        message: String,
    }
    if let Ok(m) = serde_json::from_slice::<Msg>(body) {
        return m.message;
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() {
        format!("{status}")
    } else {
        text
    }
}

/// Reads a whole (small) response body.
pub async fn read_all(resp: Response<Incoming>) -> anyhow::Result<Bytes> {
    Ok(resp
        .into_body()
        .collect()
        .await
        .context("reading the daemon's answer")?
        .to_bytes())
}

/// A hijacked connection: raw both ways, or (without the upgrade) output only.
pub enum Hijacked {
    Upgraded(TokioIo<hyper::upgrade::Upgraded>),
    Body(Incoming),
}

/// A JSON request body.
pub fn json_body(v: &serde_json::Value) -> ReqBody {
    bytes_body(serde_json::to_vec(v).unwrap_or_default())
}

/// A request body of bytes in memory.
pub fn bytes_body(bytes: Vec<u8>) -> ReqBody {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A whole request body (small JSON documents).
pub fn full(body: String) -> ReqBody {
    bytes_body(body.into_bytes())
}

pub fn empty() -> ReqBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A request body streamed from `reader` in 256 KiB chunks; `on_chunk` sees each
/// chunk's length as it is handed to the connection (upload progress).
pub fn stream_body<R, F>(reader: R, on_chunk: F) -> ReqBody
where
    R: AsyncRead + Send + 'static,
    F: Fn(usize) + Send + 'static,
{
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024).map(move |r| {
        r.map(|b| {
            on_chunk(b.len());
            Frame::data(b)
        })
    });
    StreamBody::new(stream).boxed_unsync()
}

/// Reads a response body one line at a time (the daemon's JSON-lines streams).
pub struct Lines {
    body: Incoming,
    buf: BytesMut,
    done: bool,
}

impl Lines {
    pub fn new(resp: Response<Incoming>) -> Lines {
        Lines {
            body: resp.into_body(),
            buf: BytesMut::new(),
            done: false,
        }
    }

    /// The next line without its newline; `None` at the end of the body.
    pub async fn next_line(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line = self.buf.split_to(pos + 1);
                line.truncate(pos);
                return Ok(Some(line.freeze()));
            }
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(self.buf.split().freeze()));
            }
            match self.body.frame().await {
                None => self.done = true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(anyhow::anyhow!("reading the daemon's answer: {e}")),
            }
        }
    }
}

/// Builds `path?k=v&…` with values escaped as Go's `url.Values.Encode` escapes them.
#[derive(Debug, Clone)]
pub struct Query {
    path: String,
    args: Vec<(String, String)>,
}

impl Query {
    pub fn new(path: impl Into<String>) -> Query {
        Query {
            path: path.into(),
            args: Vec::new(),
        }
    }

    pub fn arg(mut self, key: &str, value: impl Into<String>) -> Query {
        self.args.push((key.to_string(), value.into()));
        self
    }

    /// `key=1` when `on`.
    pub fn flag(self, key: &str, on: bool) -> Query {
        if on {
            self.arg(key, "1")
        } else {
            self
        }
    }

    pub fn opt(self, key: &str, value: Option<&str>) -> Query {
        match value {
            Some(v) if !v.is_empty() => self.arg(key, v),
            _ => self,
        }
    }

    pub fn build(&self) -> String {
        if self.args.is_empty() {
            return self.path.clone();
        }
        let q: Vec<String> = self
            .args
            .iter()
            .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
            .collect();
        format!("{}?{}", self.path, q.join("&"))
    }
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Escapes an image name for a URL path as Go's `url.URL` does: `/` and `:` stay (the
/// API routes names with slashes, as Docker's does).
pub fn path_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@'
            | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            parse_unix_host("unix:///run/berth/berth.sock").unwrap(),
            PathBuf::from("/run/berth/berth.sock")
        );
        assert_eq!(
            parse_unix_host("/tmp/x.sock").unwrap(),
            PathBuf::from("/tmp/x.sock")
        );
        assert!(parse_unix_host("tcp://1.2.3.4:2375").is_err());
        assert!(parse_unix_host("unix://relative").is_err());
    }

    #[test]
    fn queries() {
        let q = Query::new("/images/create")
            .arg("fromSrc", "-")
            .arg("changes", r#"CMD ["sh", "-c"]"#)
            .flag("quiet", false)
            .flag("force", true)
            .opt("tag", None)
            .opt("repo", Some(""));
        assert_eq!(
            q.build(),
            "/images/create?fromSrc=-&changes=CMD+%5B%22sh%22%2C+%22-c%22%5D&force=1"
        );
        assert_eq!(Query::new("/x").build(), "/x");
        assert_eq!(path_escape("fixture/app:1"), "fixture/app:1");
        assert_eq!(path_escape("a b#?%"), "a%20b%23%3F%25");
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(
                StatusCode::NOT_FOUND,
                br#"{"message":"No such image: x:latest"}"#
            ),
            "No such image: x:latest"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b"upstream down\n"),
            "upstream down"
        );
        assert_eq!(
            error_message(StatusCode::INTERNAL_SERVER_ERROR, b""),
            "500 Internal Server Error"
        );
        let e = ApiError {
            status: StatusCode::NOT_FOUND,
            message: "No such image: x".into(),
        };
        assert_eq!(
            e.to_string(),
            "Error response from daemon: No such image: x"
        );
    }

    /// A unix-socket HTTP server that upgrades `POST /attach` as Docker's daemon does
    /// and echoes what it reads back as one stdout frame once the client half-closes.
    async fn upgrading_server(sock: std::path::PathBuf) {
        use hyper::service::service_fn;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let svc = service_fn(|mut req: Request<Incoming>| async move {
            assert_eq!(req.headers()[UPGRADE], "tcp");
            tokio::spawn(async move {
                let up = hyper::upgrade::on(&mut req).await.unwrap();
                let mut io = TokioIo::new(up);
                let mut input = Vec::new();
                io.read_to_end(&mut input).await.unwrap();
                let mut out = vec![1u8, 0, 0, 0];
                out.extend_from_slice(&(input.len() as u32).to_be_bytes());
                out.extend_from_slice(&input);
                io.write_all(&out).await.unwrap();
                io.shutdown().await.unwrap();
            });
            Ok::<_, std::convert::Infallible>(
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header(CONNECTION, "Upgrade")
                    .header(UPGRADE, "tcp")
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            )
        });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn hijack_carries_both_ways_and_half_closes() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let server = tokio::spawn(upgrading_server(sock.clone()));
        while !sock.exists() {
            tokio::task::yield_now().await;
        }
        let client = Client::new(&format!("unix://{}", sock.display())).unwrap();
        let Hijacked::Upgraded(mut io) = client.hijack("/attach", None).await.unwrap() else {
            panic!("not upgraded");
        };
        io.write_all(b"hi\n").await.unwrap();
        // Our end of stdin: the daemon sees EOF and answers.
        io.shutdown().await.unwrap();
        let mut back = Vec::new();
        io.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, [1, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']);
        server.await.unwrap();
    }
}
