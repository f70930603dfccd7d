//! Helpers: an engine on a temporary root, and requests driven through the router
//! in-process.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use berth_engine::{DaemonConfig, Engine};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The `docker save` fixture: `$BERTH_FIXTURES/app-docker-save.tar`, by default the copy
/// in the repository's `tests/fixtures` (written by Docker, kept unchanged).
pub fn fixture() -> PathBuf {
    let dir = std::env::var("BERTH_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures"));
    dir.join("app-docker-save.tar")
}
pub const FIXTURE_ID: &str =
    "sha256:60531c6e24d2ccf57ee55d41b3db84e938c346a60152ca51b33b63721094a617";
pub const FIXTURE_TAG: &str = "fixture/app:1";

pub struct Api {
    pub engine: Engine,
    pub app: Router,
    pub root: tempfile::TempDir,
}

pub fn api() -> Api {
    let root = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(DaemonConfig {
        // Containers of these tests need no network: leave the host's alone.
        bridge: "none".into(),
        root: root.path().join("root"),
        min_free_bytes: Some(0),
        ..Default::default()
    })
    .expect("open engine");
    Api {
        app: berth_api::router(engine.clone()),
        engine,
        root,
    }
}

/// The containers go before the state root does: a created container's rootfs is
/// mounted, and a mount point left under the temporary directory would outlive the test
/// (its files undeletable, one more line in every mountinfo read of the host).
impl Drop for Api {
    fn drop(&mut self) {
        for c in self.engine.list_containers().unwrap_or_default() {
            if let Err(e) = self.engine.remove_container(&c.record.id, true) {
                eprintln!("container {} not removed: {e}", c.record.id);
            }
        }
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A JSON-message stream: one value per line.
    pub fn lines(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.body)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?}: {e}")))
            .collect()
    }

    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Api {
    pub async fn call(&self, method: Method, uri: &str, body: Body) -> Resp {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Resp {
        self.call(Method::GET, uri, Body::empty()).await
    }

    pub async fn post(&self, uri: &str) -> Resp {
        self.call(Method::POST, uri, Body::empty()).await
    }

    pub async fn delete(&self, uri: &str) -> Resp {
        self.call(Method::DELETE, uri, Body::empty()).await
    }

    /// Loads an archive file, streaming it in small chunks as a client would.
    pub async fn load_file(&self, uri: &str, path: &Path) -> Resp {
        let data = std::fs::read(path).expect("read archive");
        self.call(Method::POST, uri, chunked(data)).await
    }

    pub async fn load_fixture(&self) {
        let r = self
            .load_file("/v1.41/images/load?quiet=1", &fixture())
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            r.lines(),
            vec![serde_json::json!({"stream": "Loaded image: fixture/app:1\n"})]
        );
    }

    /// Imports a small rootfs as an untagged (dangling) image, returning its ID.
    pub async fn import_dangling(&self, content: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/images/create?fromSrc=-",
                Body::from(rootfs_tar(content)),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.lines()[0]["status"].as_str().expect("status").to_string()
    }
}

/// A body delivered in 16 KiB chunks.
pub fn chunked(data: Vec<u8>) -> Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(16 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Body::from_stream(futures::stream::iter(chunks))
}

/// A tar with one file `/hello` holding `content`.
pub fn rootfs_tar(content: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append_data(&mut h, "hello", content.as_bytes())
        .expect("append");
    b.into_inner().expect("finish tar")
}

/// The member names of a tar archive, and the content of one of them.
pub fn tar_members(data: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(data);
    a.entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect()
}

pub fn tar_file(data: &[u8], name: &str) -> Vec<u8> {
    use std::io::Read;
    let mut a = tar::Archive::new(data);
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("path").display().to_string() == name {
            let mut out = Vec::new();
            e.read_to_end(&mut out).expect("read member");
            return out;
        }
    }
    panic!("no member {name} in the archive");
}

/// The sorted keys of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}
