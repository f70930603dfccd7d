//! Pull (`POST /images/create?fromImage=`), push (`POST /images/{name}/push`) and
//! `POST /auth`, with credentials from the `X-Registry-Auth` header (base64url JSON
//! `{username,password,serveraddress}` or `{identitytoken}`), as Docker's clients send
//! them. Progress streams as Docker's JSON messages.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use berth_engine::distribution::{pull_reference, registry_of_server};
use berth_engine::Engine;
use berth_image::registry::{PullEvent, PushEvent, RegistryAuth};
use berth_types::Reference;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::images::blocking;
use crate::params::Params;
use crate::stream::{self, LateError};

const JSON: &str = "application/json";

/// Docker's `registry.AuthConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AuthConfig {
    username: String,
    password: String,
    auth: String,
    serveraddress: String,
    identitytoken: String,
    #[serde(rename = "registrytoken")]
    _registrytoken: String,
    #[serde(rename = "email")]
    _email: String,
}

impl AuthConfig {
    fn into_auth(self) -> RegistryAuth {
        if !self.identitytoken.is_empty() {
            return RegistryAuth::IdentityToken(self.identitytoken);
        }
        let (mut username, mut password) = (self.username, self.password);
        if username.is_empty() && !self.auth.is_empty() {
            if let Some((u, p)) = decode_b64(&self.auth)
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| {
                    s.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                })
            {
                username = u;
                password = p;
            }
        }
        if username.is_empty() {
            RegistryAuth::Anonymous
        } else {
            RegistryAuth::Basic { username, password }
        }
    }
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    [
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
    ]
    .iter()
    .find_map(|e| e.decode(s).ok())
}

/// Credentials of `X-Registry-Auth`; absent or unreadable means anonymous, as Docker.
pub(crate) fn registry_auth(headers: &HeaderMap) -> RegistryAuth {
    headers
        .get("x-registry-auth")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .and_then(decode_b64)
        .and_then(|b| crate::decode::body::<AuthConfig>(&b, "X-Registry-Auth").ok())
        .map(AuthConfig::into_auth)
        .unwrap_or_default()
}

/// Credentials of `X-Registry-Config` (what `docker build` sends: base64url JSON of
/// server → auth config, everything the client has stored); absent or unreadable means
/// anonymous everywhere, as Docker.
pub(crate) fn registry_config(headers: &HeaderMap) -> berth_engine::build::RegistryAuths {
    let auths: std::collections::BTreeMap<String, AuthConfig> = headers
        .get("x-registry-config")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .and_then(decode_b64)
        .and_then(|b| crate::decode::body(&b, "X-Registry-Config").ok())
        .unwrap_or_default();
    berth_engine::build::RegistryAuths::new(
        auths.into_iter().map(|(server, a)| (server, a.into_auth())),
    )
}

fn status(s: impl Into<String>) -> Value {
    json!({ "status": s.into() })
}

fn layer_status(s: &str, id: &str) -> Value {
    json!({ "status": s, "progressDetail": {}, "id": id })
}

/// `POST /images/create?fromImage=NAME&tag=TAG|DIGEST&platform=`.
pub(crate) async fn pull(engine: Engine, params: Params, headers: HeaderMap) -> Response {
    let image = params
        .non_empty("fromImage")
        .unwrap_or_default()
        .to_string();
    let reference = match pull_reference(&image, params.non_empty("tag")) {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let platform = params.non_empty("platform").map(str::to_string);
    let auth = registry_auth(&headers);
    // Refused by policy: a plain 403 before any progress is streamed.
    if let Err(e) = engine.check_policy(berth_engine::Operation::Pull, &reference) {
        return ApiError::from(e).into_response();
    }
    stream::respond(JSON, LateError::JsonLine, move |sink| {
        let shown = reference
            .tag()
            .map(str::to_string)
            .or_else(|| reference.digest().map(|d| d.to_string()))
            .unwrap_or_default();
        let repo = reference.familiar_repository();
        sink.json(&json!({ "status": format!("Pulling from {}", reference_path(&reference)), "id": shown }))
            .map_err(sink_error)?;
        let sink = Mutex::new(sink);
        let send = |v: Value| {
            let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
            // A client that went away does not stop the pull; the image still lands.
            let _ = s.json(&v);
        };
        let on_event = |ev: PullEvent| match ev {
            PullEvent::Resolved { .. } => {}
            PullEvent::Waiting { id } => send(layer_status("Pulling fs layer", &id)),
            PullEvent::Exists { id } => send(layer_status("Already exists", &id)),
            PullEvent::Downloading { id, current, total } => {
                send(stream::progress_message("Downloading", &id, current, total))
            }
            PullEvent::Complete { id } => send(layer_status("Pull complete", &id)),
        };
        let res = engine.pull(&reference, platform.as_deref(), auth, &on_event)?;
        let sink = sink.into_inner().unwrap_or_else(|p| p.into_inner());
        sink.json(&status(format!("Digest: {}", res.pulled.digest)))
            .map_err(sink_error)?;
        let name = match (reference.tag(), reference.digest()) {
            (_, Some(d)) => format!("{repo}@{d}"),
            (Some(t), None) => format!("{repo}:{t}"),
            (None, None) => repo.clone(),
        };
        let line = if res.pulled.changed {
            format!("Status: Downloaded newer image for {name}")
        } else {
            format!("Status: Image is up to date for {name}")
        };
        sink.json(&status(line)).map_err(sink_error)
    })
    .await
}

/// `library/busybox` for Docker Hub images, the path otherwise (Docker's "Pulling from").
fn reference_path(r: &Reference) -> String {
    r.path().to_string()
}

fn sink_error(e: std::io::Error) -> berth_engine::EngineError {
    berth_engine::EngineError::new(
        berth_types::ErrorKind::Unavailable,
        format!("writing the response: {e}"),
    )
}

/// `POST /images/{name}/push?tag=`.
pub(crate) async fn push(
    engine: Engine,
    name: String,
    params: Params,
    headers: HeaderMap,
) -> Response {
    let tag = params.non_empty("tag").map(str::to_string);
    let auth = registry_auth(&headers);
    let repo_shown = match Reference::parse(&name) {
        Ok(r) => r.familiar_repository(),
        Err(e) => return ApiError::from(berth_engine::EngineError::from(e)).into_response(),
    };
    // A missing image is a plain 404, before any progress is streamed.
    let (n, t) = (name.clone(), tag.clone());
    let e2 = engine.clone();
    if let Err(e) = blocking(move || e2.push_targets(&n, t.as_deref())).await {
        return e.into_response();
    }
    stream::respond(JSON, LateError::JsonLine, move |sink| {
        sink.json(&status(format!(
            "The push refers to repository [{repo_shown}]"
        )))
        .map_err(sink_error)?;
        let (tx, rx) = std::sync::mpsc::channel::<PushEvent>();
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                engine.push(
                    &name,
                    tag.as_deref(),
                    auth,
                    Arc::new(move |_: &Reference, ev| {
                        let _ = tx.send(ev);
                    }),
                )
            });
            let mut show = |ev: PushEvent| {
                let v = match ev {
                    PushEvent::Preparing { id } => layer_status("Preparing", &id),
                    PushEvent::Exists { id } => layer_status("Layer already exists", &id),
                    PushEvent::Pushing { id, current, total } => {
                        stream::progress_message("Pushing", &id, current, total)
                    }
                    PushEvent::Pushed { id } => layer_status("Pushed", &id),
                };
                let _ = sink.json(&v);
            };
            loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(ev) => show(ev),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) if handle.is_finished() => {
                        while let Ok(ev) = rx.try_recv() {
                            show(ev);
                        }
                        break;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            let results = handle.join().map_err(|_| {
                berth_engine::EngineError::internal("push thread panicked")
            })??;
            for r in results {
                let t = r.reference.tag().unwrap_or("latest").to_string();
                sink.json(&status(format!(
                    "{t}: digest: {} size: {}",
                    r.pushed.digest, r.pushed.size
                )))
                .map_err(sink_error)?;
                sink.json(&json!({
                    "progressDetail": {},
                    "aux": { "Tag": t, "Digest": r.pushed.digest.to_string(), "Size": r.pushed.size },
                }))
                .map_err(sink_error)?;
            }
            Ok(())
        })
    })
    .await
}

/// `POST /auth`: checks the credentials against the registry.
pub(crate) async fn auth(
    State(engine): State<Engine>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let cfg: AuthConfig = crate::decode::body(&body, "auth config")?;
    let server = if cfg.serveraddress.is_empty() {
        "https://index.docker.io/v1/".to_string()
    } else {
        cfg.serveraddress.clone()
    };
    let auth = cfg.into_auth();
    let registry = registry_of_server(&server);
    blocking(move || engine.registry_login(&registry, auth)).await?;
    Ok(Json(
        json!({ "Status": "Login Succeeded", "IdentityToken": "" }),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_header() {
        let mut h = HeaderMap::new();
        assert!(matches!(registry_auth(&h), RegistryAuth::Anonymous));
        let v = base64::engine::general_purpose::URL_SAFE
            .encode(r#"{"username":"u","password":"p?>","serveraddress":"x"}"#);
        h.insert("x-registry-auth", v.parse().unwrap());
        assert!(
            matches!(registry_auth(&h), RegistryAuth::Basic { username, password } if username == "u" && password == "p?>")
        );
        let v = base64::engine::general_purpose::URL_SAFE.encode(r#"{"identitytoken":"t"}"#);
        h.insert("x-registry-auth", v.parse().unwrap());
        assert!(matches!(registry_auth(&h), RegistryAuth::IdentityToken(t) if t == "t"));
        let v = base64::engine::general_purpose::STANDARD.encode(r#"{"auth":"dTpw"}"#);
        h.insert("x-registry-auth", v.parse().unwrap());
        assert!(
            matches!(registry_auth(&h), RegistryAuth::Basic { username, password } if username == "u" && password == "p")
        );
    }
}
