//! The OCI Distribution API over HTTP (axum): wire <-> [`Registry`] translation only.
//!
//! Routes: `/v2/` and `/v2/{*rest}`; repository names contain slashes, so the rest of the
//! path is parsed by [`parse_route`] from its end. `/token` issues Docker bearer tokens.
//!
//! Every `/v2` request is authenticated first (no credentials, HTTP Basic, or a bearer
//! token) and then authorised for the repository and action of its route; a refusal is a
//! `401` with a `WWW-Authenticate: Bearer realm=…/token` challenge naming the scope (so
//! clients run the token flow), or a `403 DENIED` for a Basic user lacking the permission.

use std::io::SeekFrom;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use base64::Engine as _;
use berth_types::Digest;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::audit::{AuditLog, Event};
use crate::auth::{
    AccessConfig, AccessControl, Action, AuthError, Checked, Identity, Token, SERVICE,
};
use crate::error::Error;
use crate::names::{parse_digest, parse_route, validate_name, Route};
use crate::registry::{PutManifest, Registry, Upload, MAX_MANIFEST_BYTES};

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const OCI_FILTERS: HeaderName = HeaderName::from_static("oci-filters-applied");

/// A registry as served: its rules, who may do what, and the audit log.
pub struct App {
    pub registry: Arc<Registry>,
    pub access: AccessControl,
    pub audit: AuditLog,
    /// Served over TLS: the scheme of the token realm.
    pub tls: bool,
}

impl App {
    /// Loads the users and token key and opens the audit log of `registry`'s root.
    pub fn open(
        registry: Arc<Registry>,
        access: AccessConfig,
        tls: bool,
    ) -> Result<App, AuthError> {
        let root = registry.root().to_path_buf();
        let access = AccessControl::open(&root, access)?;
        let audit = AuditLog::open(&root).map_err(|source| AuthError::Io {
            path: root.join(crate::audit::AUDIT_FILE),
            what: "open audit log",
            source,
        })?;
        Ok(App {
            registry,
            access,
            audit,
            tls,
        })
    }
}

/// The registry's router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/token", any(token))
        .route("/v2", any(base))
        .route("/v2/", any(base))
        .route("/v2/{*rest}", any(dispatch))
        .layer(axum::middleware::map_response(add_version_header))
        .with_state(app)
}

type Remote = Option<Extension<ConnectInfo<SocketAddr>>>;

/// Who sent a request, as far as its credentials say.
struct Caller {
    identity: Identity,
    /// The bearer token, when one was sent: it limits the identity's permissions.
    token: Option<Token>,
    remote: Option<SocketAddr>,
}

impl Caller {
    fn may(&self, app: &App, repo: &str, action: Action) -> bool {
        if let Some(t) = &self.token {
            if !t.grants("repository", repo, action.as_str()) {
                return false;
            }
        }
        app.access.allowed(&self.identity, repo, action)
    }
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{"code": code, "message": message, "detail": null}]
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `401` with the bearer challenge for `scope`.
fn challenge(
    app: &App,
    headers: &HeaderMap,
    scope: Option<&str>,
    error: Option<&str>,
    message: &str,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['"', '\\', ' ', ',']))
        .unwrap_or("localhost");
    let scheme = if app.tls { "https" } else { "http" };
    let mut value = format!("Bearer realm=\"{scheme}://{host}/token\",service=\"{SERVICE}\"");
    if let Some(scope) = scope {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Some(error) = error {
        value.push_str(&format!(",error=\"{error}\""));
    }
    let mut res = json_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message);
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// `user:password` of a Basic `Authorization` value.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Checks Basic credentials: from the cache, else bcrypt on the blocking pool (at most
/// one run per CPU at a time).
async fn check_basic(app: &Arc<App>, user: String, password: String) -> Option<Identity> {
    match app.access.check_cached(&user, &password) {
        Checked::Valid(id) => return Some(id),
        Checked::Invalid => return None,
        Checked::Unknown => {}
    }
    let _slot = app.access.bcrypt_slots().acquire().await.ok()?;
    let a = app.clone();
    tokio::task::spawn_blocking(move || a.access.verify(&user, &password))
        .await
        .ok()
        .flatten()
}

/// The caller of a request, or the `401` for credentials that do not check out.
async fn authenticate(
    app: &Arc<App>,
    headers: &HeaderMap,
    remote: Remote,
) -> Result<Caller, Response> {
    let remote = remote.map(|Extension(ConnectInfo(a))| a);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller {
            identity: Identity::Anonymous,
            token: None,
            remote,
        });
    };
    let value = value.to_str().unwrap_or("");
    if let Some((scheme, rest)) = value.split_once(' ') {
        if scheme.eq_ignore_ascii_case("bearer") {
            return match app.access.verify_token(rest.trim()) {
                Some(t) => Ok(Caller {
                    identity: t.identity.clone(),
                    token: Some(t),
                    remote,
                }),
                None => Err(challenge(
                    app,
                    headers,
                    None,
                    Some("invalid_token"),
                    "the bearer token is invalid or expired",
                )),
            };
        }
    }
    if let Some((user, password)) = basic_credentials(value) {
        if let Some(identity) = check_basic(app, user.clone(), password).await {
            return Ok(Caller {
                identity,
                token: None,
                remote,
            });
        }
        tracing::info!(user = %user, remote = ?remote, "registry login refused");
    }
    Err(challenge(
        app,
        headers,
        None,
        None,
        "authentication required: invalid user name or password",
    ))
}

/// The refusal of `action` on `repo`: a challenge for the anonymous and token holders
/// (who may get a token with that scope), `403 DENIED` for a Basic user.
fn refuse(app: &App, headers: &HeaderMap, caller: &Caller, repo: &str, action: Action) -> Response {
    let scope = match action {
        Action::Pull => format!("repository:{repo}:pull"),
        Action::Push => format!("repository:{repo}:pull,push"),
        Action::Delete => format!("repository:{repo}:delete"),
    };
    match (&caller.identity, &caller.token) {
        (Identity::User(u), None) => json_error(
            StatusCode::FORBIDDEN,
            "DENIED",
            &format!("user {u} may not {} repository {repo}", action.as_str()),
        ),
        (_, Some(_)) => challenge(
            app,
            headers,
            Some(&scope),
            Some("insufficient_scope"),
            &format!(
                "the token does not allow {} on repository {repo}",
                action.as_str()
            ),
        ),
        (Identity::Anonymous, None) => {
            challenge(app, headers, Some(&scope), None, "authentication required")
        }
    }
}

/// `GET /token?service=…&scope=repository:NAME:pull,push…`: a bearer token granting what
/// the (Basic-authenticated, or anonymous) caller may do of what it asks.
async fn token(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let q = query(&uri);
    let identity = match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => Identity::Anonymous,
        Some(v) => {
            let checked = match basic_credentials(v) {
                Some((u, p)) => check_basic(&app, u, p).await,
                None => None,
            };
            match checked {
                Some(id) => id,
                None => {
                    let mut res = json_error(
                        StatusCode::UNAUTHORIZED,
                        "UNAUTHORIZED",
                        "invalid user name or password",
                    );
                    res.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"berth-registry\""),
                    );
                    return res;
                }
            }
        }
    };
    let scopes: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let issued = app.access.issue(&identity, &scopes);
    let body = serde_json::json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Appends to the audit log (fsync'd) before the response goes out.
async fn audit(app: &Arc<App>, caller: &Caller, event: Event) {
    let a = app.clone();
    let user = caller.identity.name().to_string();
    let remote = caller.remote;
    let res = tokio::task::spawn_blocking(move || a.audit.record(&user, remote, &event)).await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "writing the registry audit log failed"),
        Err(e) => tracing::error!(error = %e, "registry audit task failed"),
    }
}

async fn add_version_header(mut res: Response) -> Response {
    res.headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    res
}

/// A failure as the spec's JSON error body with its status.
struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError(e)
    }
}

fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::RangeInvalid { .. } | Error::RangeNotSatisfiable { .. } => {
            StatusCode::RANGE_NOT_SATISFIABLE
        }
        Error::Unsupported(_) => StatusCode::METHOD_NOT_ALLOWED,
        Error::Denied(_) => StatusCode::FORBIDDEN,
        _ => match e.code() {
            "NAME_UNKNOWN" | "BLOB_UNKNOWN" | "BLOB_UPLOAD_UNKNOWN" | "MANIFEST_UNKNOWN" => {
                StatusCode::NOT_FOUND
            }
            "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
            "INTERNAL" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        },
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let message = self.0.to_string();
        if status.is_server_error() {
            tracing::error!(error = %message, "registry request failed");
        } else {
            tracing::debug!(error = %message, code = self.0.code(), "registry request refused");
        }
        let body = serde_json::json!({
            "errors": [{"code": self.0.code(), "message": message, "detail": null}]
        });
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// Runs a blocking registry call on the blocking pool.
async fn blocking<T: Send + 'static>(
    reg: &Arc<Registry>,
    f: impl FnOnce(&Registry) -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    let reg = reg.clone();
    tokio::task::spawn_blocking(move || f(&reg))
        .await
        .map_err(|e| ApiError(Error::Db(format!("registry task failed: {e}"))))?
        .map_err(ApiError)
}

async fn base(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    remote: Remote,
) -> Response {
    match authenticate(&app, &headers, remote).await {
        Err(res) => return res,
        Ok(c) if c.identity == Identity::Anonymous && c.token.is_none() => {
            return challenge(&app, &headers, None, None, "authentication required")
        }
        Ok(_) => {}
    }
    match method {
        Method::GET | Method::HEAD => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response(),
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

fn query(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `%XX` escapes decoded (clients may escape the `:` of a digest).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn not_allowed() -> ApiResult {
    Ok(StatusCode::METHOD_NOT_ALLOWED.into_response())
}

/// The repository and action a route needs; `None` for a method the route lacks.
fn required(route: &Route, method: &Method) -> Option<(String, Action)> {
    let read = method == Method::GET || method == Method::HEAD;
    match route {
        Route::Catalog => None,
        Route::TagsList { name } | Route::Referrers { name, .. } => {
            read.then(|| (name.clone(), Action::Pull))
        }
        Route::Blob { name, .. } | Route::Manifest { name, .. } if read => {
            Some((name.clone(), Action::Pull))
        }
        Route::Blob { name, .. } | Route::Manifest { name, .. } if method == Method::DELETE => {
            Some((name.clone(), Action::Delete))
        }
        Route::Manifest { name, .. } if method == Method::PUT => Some((name.clone(), Action::Push)),
        Route::Upload { name, .. } => Some((name.clone(), Action::Push)),
        _ => None,
    }
}

async fn dispatch(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    remote: Remote,
    body: Body,
) -> ApiResult {
    let caller = match authenticate(&app, &headers, remote).await {
        Ok(c) => c,
        Err(res) => return Ok(res),
    };
    let reg = app.registry.clone();
    let rest = percent_decode(uri.path().strip_prefix("/v2/").unwrap_or(""));
    let q = query(&uri);
    let Some(route) = parse_route(&rest) else {
        return Ok((
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"errors":[{"code":"NOT_FOUND","message":"no such endpoint","detail":null}]}"#,
        )
            .into_response());
    };
    if let Route::TagsList { name }
    | Route::Manifest { name, .. }
    | Route::Blob { name, .. }
    | Route::Upload { name, .. }
    | Route::Referrers { name, .. } = &route
    {
        validate_name(name)?;
    }
    match required(&route, &method) {
        Some((repo, action)) if !caller.may(&app, &repo, action) => {
            return Ok(refuse(&app, &headers, &caller, &repo, action));
        }
        Some(_) => {}
        // A method the route lacks: 405, but only to callers with credentials.
        None if caller.identity == Identity::Anonymous
            && caller.token.is_none()
            && !matches!(route, Route::Catalog) =>
        {
            return Ok(challenge(
                &app,
                &headers,
                None,
                None,
                "authentication required",
            ));
        }
        None => {}
    }
    match (route, method) {
        (Route::Catalog, Method::GET) => catalog(&app, &caller, &headers, &q).await,
        (Route::TagsList { name }, Method::GET) => tags_list(&reg, name, &q).await,
        (Route::Blob { name, digest }, m) if m == Method::GET || m == Method::HEAD => {
            get_blob(&reg, name, &digest, &headers, m == Method::HEAD).await
        }
        (Route::Blob { name, digest }, Method::DELETE) => {
            let d = parse_digest(&digest)?;
            let n = name.clone();
            blocking(&reg, move |r| r.delete_blob(&n, &d)).await?;
            let event = Event {
                action: "blob.delete",
                repository: name,
                reference: None,
                digest: Some(d.to_string()),
                previous_digest: None,
                from: None,
            };
            audit(&app, &caller, event).await;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Route::Upload { name, uuid }, Method::POST) if uuid.is_empty() => {
            // A mount also needs pull on the source; without it, an ordinary upload.
            let from = param(&q, "from")
                .filter(|f| param(&q, "mount").is_some() && caller.may(&app, f, Action::Pull))
                .map(String::from);
            let res = start_upload(&reg, name.clone(), from.as_deref(), &q, body).await?;
            if res.status() == StatusCode::CREATED {
                let mounted = from.is_some() && param(&q, "digest").is_none();
                let event = Event {
                    action: if mounted { "blob.mount" } else { "blob.push" },
                    repository: name,
                    reference: None,
                    digest: header_string(&res, &CONTENT_DIGEST),
                    previous_digest: None,
                    from: if mounted { from } else { None },
                };
                audit(&app, &caller, event).await;
            }
            Ok(res)
        }
        (Route::Upload { name, uuid }, Method::PATCH) if !uuid.is_empty() => {
            patch_upload(&reg, name, uuid, &headers, body).await
        }
        (Route::Upload { name, uuid }, Method::PUT) if !uuid.is_empty() => {
            let res = put_upload(&reg, name.clone(), uuid, &q, &headers, body).await?;
            let event = Event {
                action: "blob.push",
                repository: name,
                reference: None,
                digest: header_string(&res, &CONTENT_DIGEST),
                previous_digest: None,
                from: None,
            };
            audit(&app, &caller, event).await;
            Ok(res)
        }
        (Route::Upload { name, uuid }, Method::GET) if !uuid.is_empty() => {
            let n = name.clone();
            let u = uuid.clone();
            let offset = blocking(&reg, move |r| r.upload_offset(&n, &u)).await?;
            Ok(upload_accepted(
                StatusCode::NO_CONTENT,
                &name,
                &uuid,
                offset,
            ))
        }
        (Route::Upload { name, uuid }, Method::DELETE) if !uuid.is_empty() => {
            blocking(&reg, move |r| r.cancel_upload(&name, &uuid)).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Route::Manifest { name, reference }, m) if m == Method::GET || m == Method::HEAD => {
            let man = blocking(&reg, move |r| r.get_manifest(&name, &reference)).await?;
            let mut res = Response::new(Body::from(man.bytes));
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, hv(&man.media_type)?);
            h.insert(CONTENT_DIGEST, hv(&man.digest.to_string())?);
            h.insert(header::ETAG, hv(&format!("\"{}\"", man.digest))?);
            Ok(res)
        }
        (Route::Manifest { name, reference }, Method::PUT) => {
            let (res, put) =
                put_manifest(&reg, name.clone(), reference.clone(), &headers, body).await?;
            let event = Event {
                action: "manifest.push",
                repository: name,
                reference: Some(reference),
                digest: Some(put.digest.to_string()),
                previous_digest: put.previous.map(|d| d.to_string()),
                from: None,
            };
            audit(&app, &caller, event).await;
            Ok(res)
        }
        (Route::Manifest { name, reference }, Method::DELETE) => {
            let (n, r) = (name.clone(), reference.clone());
            blocking(&reg, move |reg| reg.delete_manifest(&n, &r)).await?;
            let by_digest = reference.starts_with("sha256:");
            let event = Event {
                action: if by_digest {
                    "manifest.delete"
                } else {
                    "tag.delete"
                },
                repository: name,
                digest: by_digest.then(|| reference.clone()),
                reference: Some(reference),
                previous_digest: None,
                from: None,
            };
            audit(&app, &caller, event).await;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Route::Referrers { name, digest }, Method::GET) => {
            let d = parse_digest(&digest)?;
            let filter = param(&q, "artifactType").map(String::from);
            let f = filter.clone();
            let index = blocking(&reg, move |r| r.referrers(&name, &d, f.as_deref())).await?;
            let mut res = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, berth_types::media::OCI_INDEX)],
                index.to_string(),
            )
                .into_response();
            if filter.is_some() {
                res.headers_mut()
                    .insert(OCI_FILTERS, HeaderValue::from_static("artifactType"));
            }
            Ok(res)
        }
        _ => not_allowed(),
    }
}

fn header_string(res: &Response, name: &HeaderName) -> Option<String> {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

fn hv(s: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(s)
        .map_err(|_| ApiError(Error::Db(format!("value {s:?} cannot be sent in a header"))))
}

/// `n` and `last` of a paginated list; no `n` means everything.
fn page(q: &[(String, String)]) -> Result<(usize, Option<String>), ApiError> {
    let n = match param(q, "n") {
        None | Some("") => usize::MAX,
        Some(v) => v.parse().map_err(|_| {
            ApiError(Error::Unsupported(format!(
                "pagination parameter n={v:?} is not a non-negative number"
            )))
        })?,
    };
    Ok((n, param(q, "last").map(String::from)))
}

fn link_next(path: &str, n: usize, last: &str) -> String {
    let qs: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("n", &n.to_string())
        .append_pair("last", last)
        .finish();
    format!("<{path}?{qs}>; rel=\"next\"")
}

async fn tags_list(reg: &Arc<Registry>, name: String, q: &[(String, String)]) -> ApiResult {
    let (n, last) = page(q)?;
    let repo = name.clone();
    let (tags, more) = blocking(reg, move |r| r.tags(&repo, n, last.as_deref())).await?;
    let body = serde_json::json!({"name": name, "tags": tags});
    let mut res = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let (true, Some(last)) = (more, tags.last()) {
        let link = link_next(&format!("/v2/{name}/tags/list"), n, last);
        res.headers_mut().insert(header::LINK, hv(&link)?);
    }
    Ok(res)
}

/// The catalog, only with the repositories the caller may pull.
async fn catalog(
    app: &Arc<App>,
    caller: &Caller,
    headers: &HeaderMap,
    q: &[(String, String)],
) -> ApiResult {
    let catalog_scope = "registry:catalog:*";
    let listed = match (&caller.identity, &caller.token) {
        (_, Some(t)) => t.grants("registry", "catalog", "*"),
        (Identity::User(_), None) => true,
        (Identity::Anonymous, None) => false,
    };
    if !listed {
        let error = caller.token.as_ref().map(|_| "insufficient_scope");
        return Ok(challenge(
            app,
            headers,
            Some(catalog_scope),
            error,
            "authentication required to list repositories",
        ));
    }
    let (n, mut last) = page(q)?;
    let batch = n.clamp(1, 1000);
    let mut repos: Vec<String> = Vec::new();
    let mut more = false;
    // Filtered page by page until `n` visible repositories are collected.
    loop {
        let l = last.clone();
        let (chunk, chunk_more) =
            blocking(&app.registry, move |r| r.catalog(batch, l.as_deref())).await?;
        last = chunk.last().cloned();
        for repo in chunk {
            if repos.len() == n {
                more = true;
                break;
            }
            if app.access.allowed(&caller.identity, &repo, Action::Pull) {
                repos.push(repo);
            }
        }
        if more || !chunk_more || last.is_none() {
            break;
        }
        if repos.len() == n {
            more = true;
            break;
        }
    }
    let body = serde_json::json!({"repositories": repos});
    let mut res = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let (true, Some(last)) = (more, repos.last()) {
        res.headers_mut()
            .insert(header::LINK, hv(&link_next("/v2/_catalog", n, last))?);
    }
    Ok(res)
}

/// Parses `bytes=START-END` / `bytes=START-` against a blob of `size` bytes.
fn byte_range(spec: &str, size: u64, digest: &Digest) -> Result<(u64, u64), Error> {
    let bad = |reason: &str| Error::RangeNotSatisfiable {
        digest: *digest,
        reason: reason.to_string(),
    };
    let r = spec
        .strip_prefix("bytes=")
        .ok_or_else(|| bad("only \"bytes=START-END\" ranges are supported"))?;
    let (s, e) = r
        .split_once('-')
        .ok_or_else(|| bad("a range needs START-END"))?;
    let start: u64 = s
        .trim()
        .parse()
        .map_err(|_| bad("only one range with a numeric start is supported"))?;
    let end: u64 = match e.trim() {
        "" => size.saturating_sub(1),
        e => e
            .parse()
            .map_err(|_| bad("the range end is not a number"))?,
    };
    let end = end.min(size.saturating_sub(1));
    if start > end || start >= size {
        return Err(bad(&format!("bytes {start}-{end} of a {size}-byte blob")));
    }
    Ok((start, end))
}

async fn get_blob(
    reg: &Arc<Registry>,
    name: String,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult {
    let d = parse_digest(digest)?;
    let (path, size) = blocking(reg, move |r| r.blob(&name, &d)).await?;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) if !head => match byte_range(spec, size, &d) {
            Ok(r) => Some(r),
            Err(e) => {
                let mut res = ApiError(e).into_response();
                res.headers_mut()
                    .insert(header::CONTENT_RANGE, hv(&format!("bytes */{size}"))?);
                return Ok(res);
            }
        },
        _ => None,
    };
    let (status, start, len) = match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        None => (StatusCode::OK, 0, size),
    };
    let body = if head {
        Body::empty()
    } else {
        let mut f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| ApiError(berth_store::Error::io(&path, "open blob", e).into()))?;
        if start > 0 {
            f.seek(SeekFrom::Start(start))
                .await
                .map_err(|e| ApiError(berth_store::Error::io(&path, "seek blob", e).into()))?;
        }
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            f.take(len),
            256 * 1024,
        ))
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(CONTENT_DIGEST, hv(&d.to_string())?);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, hv(&format!("\"{d}\""))?);
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            hv(&format!("bytes {}-{}/{size}", start, start + len - 1))?,
        );
    }
    Ok(res)
}

fn upload_accepted(status: StatusCode, name: &str, uuid: &str, offset: u64) -> Response {
    let location = format!("/v2/{name}/blobs/uploads/{uuid}");
    let range = format!("0-{}", offset.saturating_sub(1));
    let mut res = status.into_response();
    let h = res.headers_mut();
    if let (Ok(l), Ok(r), Ok(u)) = (
        HeaderValue::from_str(&location),
        HeaderValue::from_str(&range),
        HeaderValue::from_str(uuid),
    ) {
        h.insert(header::LOCATION, l);
        h.insert(header::RANGE, r);
        h.insert(UPLOAD_UUID, u);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
    res
}

fn blob_created(name: &str, digest: &Digest) -> ApiResult {
    let mut res = StatusCode::CREATED.into_response();
    let h = res.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{name}/blobs/{digest}"))?);
    h.insert(CONTENT_DIGEST, hv(&digest.to_string())?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
    Ok(res)
}

/// Streams a request body into an upload on the blocking pool. A failing body (client
/// gone) keeps what arrived, so the client can ask for the offset and resume; a failing
/// write (disk) loses the upload.
async fn write_body(up: Upload, body: Body) -> (Option<Upload>, Result<(), Error>) {
    use std::io::Write as _;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let task = tokio::task::spawn_blocking(move || {
        let mut up = up;
        while let Some(chunk) = rx.blocking_recv() {
            if let Err(e) = up.writer.write_all(&chunk) {
                return (up, Err(e));
            }
        }
        (up, Ok(()))
    });
    let mut stream = body.into_data_stream();
    let mut body_err = None;
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(b) => {
                if tx.send(b).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                body_err = Some(e);
                break;
            }
        }
    }
    drop(tx);
    match task.await {
        Err(e) => (
            None,
            Err(Error::Db(format!("upload writer task failed: {e}"))),
        ),
        Ok((_, Err(e))) => (
            None,
            Err(
                berth_store::Error::io(std::path::Path::new("content/ingest"), "write upload", e)
                    .into(),
            ),
        ),
        Ok((up, Ok(()))) => match body_err {
            Some(e) => {
                let repo = up.repo.clone();
                (
                    Some(up),
                    Err(Error::BlobUploadInvalid {
                        repo,
                        uuid: String::new(),
                        reason: format!("reading the request body failed: {e}"),
                    }),
                )
            }
            None => (Some(up), Ok(())),
        },
    }
}

/// `from`: the mount source, given only when the caller may pull from it.
async fn start_upload(
    reg: &Arc<Registry>,
    name: String,
    from: Option<&str>,
    q: &[(String, String)],
    body: Body,
) -> ApiResult {
    if let (Some(mount), Some(from)) = (param(q, "mount"), from) {
        let d = parse_digest(mount)?;
        let (n, f) = (name.clone(), from.to_string());
        if blocking(reg, move |r| r.mount(&n, &f, &d)).await? {
            return blob_created(&name, &d);
        }
        // Not in `from`: fall back to an upload session, as the spec allows.
    }
    if let Some(digest) = param(q, "digest") {
        let d = parse_digest(digest)?;
        let n = name.clone();
        let up = blocking(reg, move |r| r.new_upload(&n)).await?;
        let (up, res) = write_body(up, body).await;
        res?;
        let Some(up) = up else {
            return Err(ApiError(Error::Db("upload lost".into())));
        };
        let digest = blocking(reg, move |r| r.complete_upload(up, &d)).await?;
        return blob_created(&name, &digest);
    }
    let n = name.clone();
    let uuid = blocking(reg, move |r| r.begin_upload(&n)).await?;
    Ok(upload_accepted(StatusCode::ACCEPTED, &name, &uuid, 0))
}

/// Checks `Content-Range: START-END` against the upload's offset and the body length.
fn check_content_range(headers: &HeaderMap, up: &Upload, uuid: &str) -> Result<(), Error> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(());
    };
    let invalid = |reason: String| Error::BlobUploadInvalid {
        repo: up.repo.clone(),
        uuid: uuid.into(),
        reason,
    };
    let s = v
        .to_str()
        .map_err(|_| invalid("Content-Range is not text".into()))?;
    let r = s
        .trim()
        .trim_start_matches("bytes ")
        .trim_start_matches("bytes=");
    let (a, b) = r
        .split_once('-')
        .ok_or_else(|| invalid(format!("Content-Range {s:?} is not START-END")))?;
    let (start, end): (u64, u64) = match (a.parse(), b.split('/').next().unwrap_or("").parse()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Err(invalid(format!("Content-Range {s:?} is not START-END"))),
    };
    if start != up.offset() || end < start {
        return Err(Error::RangeInvalid {
            repo: up.repo.clone(),
            uuid: uuid.into(),
            start,
            offset: up.offset(),
        });
    }
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len != end - start + 1 {
            return Err(Error::RangeInvalid {
                repo: up.repo.clone(),
                uuid: uuid.into(),
                start,
                offset: up.offset(),
            });
        }
    }
    Ok(())
}

/// Takes the session, checks the range, appends the body; the session is given back
/// unless the write failed.
async fn append(
    reg: &Arc<Registry>,
    name: &str,
    uuid: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Upload, ApiError> {
    let (n, u) = (name.to_string(), uuid.to_string());
    let up = blocking(reg, move |r| r.take_upload(&n, &u)).await?;
    if let Err(e) = check_content_range(headers, &up, uuid) {
        reg.return_upload(uuid, up);
        return Err(e.into());
    }
    match write_body(up, body).await {
        (Some(up), Ok(())) => Ok(up),
        (Some(up), Err(e)) => {
            reg.return_upload(uuid, up);
            Err(e.into())
        }
        (None, Err(e)) => {
            reg.end_upload(uuid);
            Err(e.into())
        }
        (None, Ok(())) => {
            reg.end_upload(uuid);
            Err(ApiError(Error::Db("upload lost".into())))
        }
    }
}

async fn patch_upload(
    reg: &Arc<Registry>,
    name: String,
    uuid: String,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let up = append(reg, &name, &uuid, headers, body).await?;
    let offset = up.offset();
    reg.return_upload(&uuid, up);
    Ok(upload_accepted(StatusCode::ACCEPTED, &name, &uuid, offset))
}

async fn put_upload(
    reg: &Arc<Registry>,
    name: String,
    uuid: String,
    q: &[(String, String)],
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let d = match param(q, "digest") {
        Some(d) => parse_digest(d)?,
        None => {
            return Err(ApiError(Error::DigestInvalid {
                reason: format!(
                    "closing upload {uuid} in repository {name} needs ?digest=sha256:…"
                ),
            }))
        }
    };
    let up = append(reg, &name, &uuid, headers, body).await?;
    reg.end_upload(&uuid);
    // A digest mismatch removes the upload: its bytes can never become that blob.
    let digest = blocking(reg, move |r| r.complete_upload(up, &d)).await?;
    blob_created(&name, &digest)
}

async fn put_manifest(
    reg: &Arc<Registry>,
    name: String,
    reference: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Response, PutManifest), ApiError> {
    let bytes = match axum::body::to_bytes(body, MAX_MANIFEST_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return Err(ApiError(Error::SizeInvalid {
                what: format!("manifest {reference} for repository {name}"),
                size: MAX_MANIFEST_BYTES as u64 + 1,
                limit: MAX_MANIFEST_BYTES as u64,
            }))
        }
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let (n, r) = (name.clone(), reference.clone());
    let put = blocking(reg, move |reg| {
        reg.put_manifest(&n, &r, ct.as_deref(), &bytes)
    })
    .await?;
    let mut res = StatusCode::CREATED.into_response();
    let h = res.headers_mut();
    h.insert(
        header::LOCATION,
        hv(&format!("/v2/{name}/manifests/{}", put.digest))?,
    );
    h.insert(CONTENT_DIGEST, hv(&put.digest.to_string())?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
    if let Some(s) = put.subject {
        h.insert(OCI_SUBJECT, hv(&s.to_string())?);
    }
    Ok((res, put))
}
