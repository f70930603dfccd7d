//! The client side of the OCI Distribution API: pull and push of images between a
//! registry and the store.
//!
//! [`RegistryClient`] speaks HTTP(S) (reqwest, rustls) and handles authentication: a
//! `401` with `WWW-Authenticate: Bearer realm=…,service=…` is answered by fetching a
//! token from the realm (with Basic credentials, or an identity token as OAuth refresh
//! token), a `Basic` challenge by sending the credentials. Tokens are cached per scope.
//! Plain HTTP is only used for loopback registries and registries named insecure, as
//! Docker does. All calls are blocking; the engine runs them on blocking threads.
//!
//! [`pull`](pull::pull) streams every layer straight through
//! [`ingest_layer`](crate::layer::ingest_layer) (blob written, digests computed and
//! layer unpacked in one pass) and [`push`](push::push) uploads blobs as stored.

pub mod archive_copy;
pub mod copy;
pub mod pull;
pub mod push;

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use berth_types::{media, Digest, Reference};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use crate::error::{ImageError, Result};

pub use archive_copy::{copy_from_archive, copy_to_archive, Endpoint};
pub use copy::{copy, CopyEvent};
pub use pull::{pull, PullEvent, PullOptions, Pulled};
pub use push::{push, PushEvent, Pushed};

/// Docker Hub's API host for the `docker.io` domain.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Manifest media types berth accepts, in Docker's order of preference.
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// Credentials for one registry. Never logged.
#[derive(Clone, Default)]
pub enum RegistryAuth {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth refresh token (Docker's `identitytoken`).
    IdentityToken(String),
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            RegistryAuth::IdentityToken(_) => f.write_str("IdentityToken(***)"),
        }
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params: HashMap<String, String> = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        }),
        _ => None,
    }
}

/// Whether plain HTTP may be used for `host` without being asked: loopback only.
fn is_loopback(host: &str) -> bool {
    let name = host
        .strip_prefix('[')
        .and_then(|h| h.split_once(']').map(|(a, _)| a))
        .unwrap_or_else(|| host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host));
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A mirror endpoint as it may be shown (logs, errors): without its credentials.
pub fn endpoint_display(endpoint: &str) -> String {
    match reqwest::Url::parse(endpoint) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.as_str().trim_end_matches('/').to_string()
        }
        Err(_) => "<invalid mirror URL>".to_string(),
    }
}

/// A connection to one registry, with its credentials and cached tokens.
pub struct RegistryClient {
    http: Client,
    /// The registry as references name it (`docker.io`, `127.0.0.1:5000`).
    registry: String,
    /// `https://host` or `http://host`, decided by [`RegistryClient::connect`].
    base: String,
    auth: RegistryAuth,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, String>>,
}

fn transport(registry: &str, e: reqwest::Error) -> ImageError {
    let mut msg = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    ImageError::Unavailable(format!("registry {registry}: {msg}"))
}

impl RegistryClient {
    /// Connects to `registry` (the domain of a reference): pings `/v2/` over HTTPS, and
    /// over plain HTTP when HTTPS fails and the registry is loopback or in `insecure`.
    pub fn connect(registry: &str, auth: RegistryAuth, insecure: &[String]) -> Result<Self> {
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .timeout(None)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| transport(registry, e))?;
        let api_host = if registry == berth_types::reference::DEFAULT_DOMAIN {
            DOCKER_HUB_API
        } else {
            registry
        };
        let plain_ok = is_loopback(registry) || insecure.iter().any(|i| i == registry);
        let mut client = RegistryClient {
            http,
            registry: registry.to_string(),
            base: format!("https://{api_host}"),
            auth,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        };
        match client.ping() {
            Ok(()) => Ok(()),
            Err(ImageError::Unavailable(first)) if plain_ok => {
                client.base = format!("http://{api_host}");
                client
                    .ping()
                    .map_err(|e| ImageError::Unavailable(format!("{first}; over plain HTTP: {e}")))
            }
            Err(e) => Err(e),
        }
        .map(|()| client)
    }

    /// Connects to a mirror of `origin` at `endpoint` (`https://host[:port][/prefix]`, or
    /// `http://…` for a loopback host only). The mirror serves the origin's repository
    /// paths; errors name the endpoint. Credentials may ride in the endpoint's userinfo
    /// (`https://user:pw@mirror`); otherwise the mirror is asked anonymously (the origin's
    /// credentials are never sent to a mirror).
    pub fn connect_mirror(origin: &str, endpoint: &str) -> Result<Self> {
        let shown = endpoint_display(endpoint);
        let url = reqwest::Url::parse(endpoint)
            .map_err(|e| ImageError::Invalid(format!("mirror {shown} of {origin}: {e}")))?;
        let host = url.host_str().unwrap_or_default().to_string();
        let hostport = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&hostport) => {}
            "http" => {
                return Err(ImageError::Invalid(format!(
                    "mirror {shown} of {origin}: plain HTTP is only allowed for loopback hosts"
                )))
            }
            s => {
                return Err(ImageError::Invalid(format!(
                    "mirror {shown} of {origin}: unsupported scheme {s:?}"
                )))
            }
        }
        let auth = if url.username().is_empty() {
            RegistryAuth::Anonymous
        } else {
            RegistryAuth::Basic {
                username: url.username().to_string(),
                password: url.password().unwrap_or_default().to_string(),
            }
        };
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .timeout(None)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| transport(&shown, e))?;
        let client = RegistryClient {
            http,
            registry: format!("{shown} (mirror of {origin})"),
            base: shown,
            auth,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        };
        client.ping()?;
        Ok(client)
    }

    fn ping(&self) -> Result<()> {
        let resp = self
            .http
            .get(format!("{}/v2/", self.base))
            .send()
            .map_err(|e| transport(&self.registry, e))?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED => {
                self.note_challenge(resp.headers());
                Ok(())
            }
            s => Err(ImageError::Registry(format!(
                "registry {}: GET /v2/ answered {s}: not an OCI registry",
                self.registry
            ))),
        }
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn note_challenge(&self, headers: &HeaderMap) {
        let ch = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .max_by_key(|c| matches!(c, Challenge::Bearer { .. }));
        if let Some(ch) = ch {
            *self.challenge.lock().unwrap_or_else(|p| p.into_inner()) = Some(ch);
        }
    }

    /// Checks the credentials (docker login): a request to `/v2/` that must not end
    /// in 401.
    pub fn login(&self) -> Result<()> {
        let resp = self.send("pull", &|c| c.get(format!("{}/v2/", self.base)), "")?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(ImageError::Forbidden(format!(
                "registry {}: login failed: unauthorized (check the username and password)",
                self.registry
            )));
        }
        Ok(())
    }

    /// Fetches a token for `scope` from the Bearer realm.
    fn fetch_token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<String> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        if !scope.is_empty() {
            query.push(("scope", scope));
        }
        let req = match &self.auth {
            RegistryAuth::IdentityToken(t) => {
                let mut form = query.clone();
                form.push(("grant_type", "refresh_token"));
                form.push(("refresh_token", t));
                form.push(("client_id", "berth"));
                self.http.post(realm).form(&form)
            }
            RegistryAuth::Basic { username, password } => self
                .http
                .get(realm)
                .query(&query)
                .basic_auth(username, Some(password)),
            RegistryAuth::Anonymous => self.http.get(realm).query(&query),
        };
        let resp = req.send().map_err(|e| transport(&self.registry, e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ImageError::Forbidden(format!(
                "registry {}: the token service refused the credentials ({status})",
                self.registry
            )));
        }
        if !status.is_success() {
            return Err(ImageError::Registry(format!(
                "registry {}: token service answered {status}",
                self.registry
            )));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let body = read_limited(resp, 1 << 20, &self.registry, "token")?;
        let t: Token = serde_json::from_slice(&body).map_err(|e| {
            ImageError::Registry(format!("registry {}: token answer: {e}", self.registry))
        })?;
        t.token.or(t.access_token).ok_or_else(|| {
            ImageError::Registry(format!(
                "registry {}: token answer has no token",
                self.registry
            ))
        })
    }

    /// Adds the credentials the last challenge asked for.
    fn authorize(&self, req: RequestBuilder, scope: &str) -> Result<RequestBuilder> {
        let ch = self
            .challenge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match ch {
            None => Ok(req),
            Some(Challenge::Basic) => Ok(match &self.auth {
                RegistryAuth::Basic { username, password } => {
                    req.basic_auth(username, Some(password))
                }
                _ => req,
            }),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let cached = self
                    .tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(scope)
                    .cloned();
                let token = match cached {
                    Some(t) => t,
                    None => {
                        let t = self.fetch_token(&realm, service.as_deref(), scope)?;
                        self.tokens
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(scope.to_string(), t.clone());
                        t
                    }
                };
                Ok(req.header(AUTHORIZATION, format!("Bearer {token}")))
            }
        }
    }

    /// Sends a request built by `build`, with credentials for `repo` and `actions`
    /// (`pull` or `pull,push`); after a 401 learns the challenge and retries once.
    fn send(
        &self,
        actions: &str,
        build: &dyn Fn(&Client) -> RequestBuilder,
        repo: &str,
    ) -> Result<Response> {
        let scope = if repo.is_empty() {
            String::new()
        } else {
            format!("repository:{repo}:{actions}")
        };
        let mut retried = false;
        loop {
            let req = self.authorize(build(&self.http), &scope)?;
            let resp = req.send().map_err(|e| transport(&self.registry, e))?;
            if resp.status() == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                self.tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&scope);
                self.note_challenge(resp.headers());
                if self
                    .challenge
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_some()
                {
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    fn url(&self, repo: &str, tail: &str) -> String {
        format!("{}/v2/{repo}/{tail}", self.base)
    }

    /// An error for an unexpected answer, with the registry's error message if any.
    fn unexpected(&self, what: &str, resp: Response) -> ImageError {
        let status = resp.status();
        let body = read_limited(resp, 64 << 10, &self.registry, what).unwrap_or_default();
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v["errors"][0]["message"]
                    .as_str()
                    .or(v["errors"][0]["code"].as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let msg = format!(
            "registry {}: {what}: {status}{}{detail}",
            self.registry,
            if detail.is_empty() { "" } else { ": " }
        );
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ImageError::Forbidden(msg),
            StatusCode::NOT_FOUND => ImageError::NotFound(msg),
            s if s.is_server_error() => ImageError::Unavailable(msg),
            _ => ImageError::Registry(msg),
        }
    }

    /// GETs a manifest or index by tag or digest: its bytes, media type and digest
    /// (computed over the bytes; checked against the digest asked for).
    pub fn get_manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String, Digest)> {
        let repo = reference.path();
        let target = match (reference.digest(), reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => berth_types::reference::DEFAULT_TAG.to_string(),
        };
        self.get_manifest_at(repo, &target, reference.digest())
    }

    /// GETs a manifest of `repo` by tag or digest (`want`: the digest it must have).
    pub fn get_manifest_at(
        &self,
        repo: &str,
        target: &str,
        want: Option<&Digest>,
    ) -> Result<(Vec<u8>, String, Digest)> {
        let what = format!("manifest {repo}:{target}");
        let url = self.url(repo, &format!("manifests/{target}"));
        let resp = self.send(
            "pull",
            &|c| c.get(&url).header(ACCEPT, MANIFEST_ACCEPT),
            repo,
        )?;
        if !resp.status().is_success() {
            return Err(self.unexpected(&format!("GET {what}"), resp));
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .unwrap_or_default();
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let bytes = read_limited(resp, 4 << 20, &self.registry, &what)?;
        let digest = Digest::of(&bytes);
        if let Some(w) = want {
            if *w != digest {
                return Err(ImageError::Invalid(format!(
                    "registry {}: {what}: content has digest {digest}, not the {w} asked for",
                    self.registry
                )));
            }
        } else if let Some(h) = header_digest {
            if h != digest {
                return Err(ImageError::Invalid(format!(
                    "registry {}: {what}: content has digest {digest}, the registry announced {h}",
                    self.registry
                )));
            }
        }
        let media_type = if media::is_manifest(&content_type) || media::is_index(&content_type) {
            content_type
        } else {
            let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                ImageError::Invalid(format!("registry {}: {what}: {e}", self.registry))
            })?;
            match v["mediaType"].as_str() {
                Some(m) => m.to_string(),
                None if v.get("manifests").is_some() => media::OCI_INDEX.to_string(),
                None => media::OCI_MANIFEST.to_string(),
            }
        };
        Ok((bytes, media_type, digest))
    }

    /// Opens a blob for reading (the body streams as it is read).
    pub fn get_blob(&self, repo: &str, digest: &Digest) -> Result<(Response, Option<u64>)> {
        let url = self.url(repo, &format!("blobs/{digest}"));
        let resp = self.send("pull", &|c| c.get(&url), repo)?;
        if !resp.status().is_success() {
            return Err(self.unexpected(&format!("GET blob {digest} of {repo}"), resp));
        }
        let len = resp.content_length();
        Ok((resp, len))
    }

    /// Whether the repository has the blob (HEAD).
    pub fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let url = self.url(repo, &format!("blobs/{digest}"));
        let resp = self.send("pull,push", &|c| c.head(&url), repo)?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.unexpected(&format!("HEAD blob {digest} of {repo}"), resp)),
        }
    }

    /// Uploads a blob: `POST` a session, then one `PUT` with the whole body.
    pub fn put_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        open: &dyn Fn() -> Result<Box<dyn Read + Send>>,
    ) -> Result<()> {
        let start = self.url(repo, "blobs/uploads/");
        let resp = self.send("pull,push", &|c| c.post(&start), repo)?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.unexpected(&format!("POST upload of blob {digest} to {repo}"), resp));
        }
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ImageError::Registry(format!(
                    "registry {}: upload session for {repo} has no Location",
                    self.registry
                ))
            })?
            .to_string();
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            location
        } else {
            format!("{}{location}", self.base)
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        // The body is a stream; a retry after a 401 reopens it.
        let body_err: Mutex<Option<ImageError>> = Mutex::new(None);
        let resp = self.send(
            "pull,push",
            &|c| {
                let body = match open() {
                    Ok(r) => reqwest::blocking::Body::sized(r, size),
                    Err(e) => {
                        *body_err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        reqwest::blocking::Body::from(Vec::new())
                    }
                };
                c.put(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(body)
            },
            repo,
        )?;
        if let Some(e) = body_err.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        if resp.status() != StatusCode::CREATED {
            return Err(self.unexpected(&format!("PUT blob {digest} to {repo}"), resp));
        }
        Ok(())
    }

    /// Uploads a manifest or index under a tag or digest; returns the digest the
    /// registry reports (checked against the bytes).
    pub fn put_manifest(
        &self,
        repo: &str,
        target: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest> {
        let url = self.url(repo, &format!("manifests/{target}"));
        let resp = self.send(
            "pull,push",
            &|c| {
                c.put(&url)
                    .header(reqwest::header::CONTENT_TYPE, media_type)
                    .body(bytes.to_vec())
            },
            repo,
        )?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(self.unexpected(&format!("PUT manifest {repo}:{target}"), resp));
        }
        let digest = Digest::of(bytes);
        if let Some(h) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
        {
            if h != digest {
                return Err(ImageError::Registry(format!(
                    "registry {}: manifest {repo}:{target} stored with digest {h}, berth sent {digest}",
                    self.registry
                )));
            }
        }
        Ok(digest)
    }
}

/// Reads at most `limit` bytes of a response; more is an error.
fn read_limited(resp: Response, limit: u64, registry: &str, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    resp.take(limit + 1).read_to_end(&mut out).map_err(|e| {
        ImageError::Unavailable(format!("registry {registry}: reading {what}: {e}"))
    })?;
    if out.len() as u64 > limit {
        return Err(ImageError::Invalid(format!(
            "registry {registry}: {what} is larger than the {limit} bytes allowed"
        )));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:samalba/my-app:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="berth""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
