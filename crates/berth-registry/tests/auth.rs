//! Access control through the router: 401 challenges, HTTP Basic, the Docker token flow,
//! per-endpoint permissions, catalog filtering, immutable tags and the audit log.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use base64::Engine as _;
use berth_registry::auth::{add_user, parse_patterns, AccessConfig, UserPerms};
use berth_registry::{router, App, Registry, RegistryConfig};
use berth_types::{media, Digest};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

struct T {
    dir: tempfile::TempDir,
    app: Arc<App>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// Users: `admin` (everything), `dev` (pull and push `team/*`), `reader` (pull `*`),
/// `prodpush` (push and pull `prod/*`, delete `prod/*`).
fn setup(immutable: &[&str], anonymous_pull: &[&str]) -> T {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let reg = Registry::open(
        &root,
        RegistryConfig {
            delete_enabled: true,
            immutable_tags: parse_patterns(&strings(immutable)).unwrap(),
        },
    )
    .unwrap();
    let add = |name: &str, pull: &[&str], push: &[&str], delete: &[&str]| {
        let perms = UserPerms {
            pull: strings(pull),
            push: strings(push),
            delete: strings(delete),
        };
        add_user(&root, name, &format!("{name}-pw"), &perms).unwrap();
    };
    add("admin", &["*"], &["*"], &["*"]);
    add("dev", &["team/*"], &["team/*"], &[]);
    add("reader", &["*"], &[], &[]);
    add("prodpush", &["prod/*"], &["prod/*"], &["prod/*"]);
    let access = AccessConfig {
        anonymous_pull: parse_patterns(&strings(anonymous_pull)).unwrap(),
        htpasswd: None,
    };
    let app = Arc::new(App::open(Arc::new(reg), access, false).unwrap());
    T { dir, app }
}

impl T {
    async fn req(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Response<Body> {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "reg.test:5000");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        router(self.app.clone())
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap()
    }

    async fn push_blob(&self, auth: &str, repo: &str, data: &[u8]) -> Response<Body> {
        let d = Digest::of(data);
        self.req(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            Some(auth),
            &[],
            data.to_vec(),
        )
        .await
    }

    /// Pushes a config blob and an OCI manifest of it (`data` makes it unique) as `tag`.
    async fn push_image(&self, auth: &str, repo: &str, tag: &str, data: &str) -> Response<Body> {
        let config = format!("{{\"x\":\"{data}\"}}");
        let res = self.push_blob(auth, repo, config.as_bytes()).await;
        if res.status() != StatusCode::CREATED {
            return res;
        }
        let m = manifest(config.as_bytes());
        self.req(
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            Some(auth),
            &[("content-type", media::OCI_MANIFEST)],
            m,
        )
        .await
    }

    async fn token(&self, auth: Option<&str>, scopes: &[&str]) -> (StatusCode, String) {
        let mut uri = "/token?service=berth-registry".to_string();
        for s in scopes {
            uri.push_str(&format!(
                "&scope={}",
                s.replace(':', "%3A").replace(',', "%2C")
            ));
        }
        let res = self.req("GET", &uri, auth, &[], vec![]).await;
        let status = res.status();
        let body = body_json(res).await;
        (
            status,
            body["token"].as_str().unwrap_or_default().to_string(),
        )
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("root/audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn manifest(config: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": Digest::of(config).to_string(), "size": config.len()},
        "layers": []
    }))
    .unwrap()
}

fn www_auth(res: &Response<Body>) -> String {
    res.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn body_json(res: Response<Body>) -> serde_json::Value {
    let b = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn anonymous_requests_get_a_bearer_challenge() {
    let t = setup(&[], &[]);
    let res = t.req("GET", "/v2/", None, &[], vec![]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www_auth(&res),
        r#"Bearer realm="http://reg.test:5000/token",service="berth-registry""#
    );
    let res = t
        .req("GET", "/v2/team/app/manifests/1", None, &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www_auth(&res),
        r#"Bearer realm="http://reg.test:5000/token",service="berth-registry",scope="repository:team/app:pull""#
    );
    assert_eq!(body_json(res).await["errors"][0]["code"], "UNAUTHORIZED");
    let res = t
        .req("POST", "/v2/team/app/blobs/uploads/", None, &[], vec![])
        .await;
    assert!(www_auth(&res).ends_with(r#"scope="repository:team/app:pull,push""#));
    let res = t.req("GET", "/v2/_catalog", None, &[], vec![]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(www_auth(&res).contains(r#"scope="registry:catalog:*""#));
}

#[tokio::test]
async fn basic_credentials_are_checked() {
    let t = setup(&[], &[]);
    let ok = basic("dev", "dev-pw");
    let res = t.req("GET", "/v2/", Some(&ok), &[], vec![]).await;
    assert_eq!(res.status(), StatusCode::OK);
    // Twice: the second one is served from the credential cache.
    let res = t.req("GET", "/v2/", Some(&ok), &[], vec![]).await;
    assert_eq!(res.status(), StatusCode::OK);
    for bad in [
        basic("dev", "wrong"),
        basic("nobody", "dev-pw"),
        "Basic !!".into(),
    ] {
        let res = t.req("GET", "/v2/", Some(&bad), &[], vec![]).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert!(www_auth(&res).starts_with("Bearer realm="));
    }
}

#[tokio::test]
async fn permissions_are_enforced_per_endpoint() {
    let t = setup(&[], &[]);
    let dev = basic("dev", "dev-pw");
    let reader = basic("reader", "reader-pw");
    let admin = basic("admin", "admin-pw");
    assert_eq!(
        t.push_image(&dev, "team/app", "1", "a").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        t.push_image(&admin, "other/app", "1", "b").await.status(),
        StatusCode::CREATED
    );
    // dev: push and pull team/*, nothing elsewhere.
    let res = t.push_image(&dev, "other/app", "2", "c").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let err = body_json(res).await;
    assert_eq!(err["errors"][0]["code"], "DENIED");
    assert_eq!(
        err["errors"][0]["message"],
        "user dev may not push repository other/app"
    );
    for (method, uri) in [
        ("GET", "/v2/other/app/manifests/1"),
        ("HEAD", "/v2/other/app/manifests/1"),
        ("GET", "/v2/other/app/tags/list"),
        ("GET", "/v2/other/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        ("GET", "/v2/other/app/referrers/sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        ("POST", "/v2/other/app/blobs/uploads/"),
        ("PATCH", "/v2/other/app/blobs/uploads/x"),
        ("PUT", "/v2/other/app/blobs/uploads/x?digest=sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        ("GET", "/v2/other/app/blobs/uploads/x"),
        ("DELETE", "/v2/other/app/blobs/uploads/x"),
        ("DELETE", "/v2/team/app/manifests/1"),
        ("DELETE", "/v2/team/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000"),
    ] {
        let res = t.req(method, uri, Some(&dev), &[], vec![]).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{method} {uri}");
    }
    // Unknown repositories are refused before they are looked up: no existence leak.
    let res = t
        .req("GET", "/v2/nope/tags/list", Some(&dev), &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // reader pulls everything, pushes nothing.
    let res = t
        .req(
            "GET",
            "/v2/team/app/manifests/1",
            Some(&reader),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = t.push_image(&reader, "team/app", "2", "d").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // A mount needs pull on the source: dev may not read other/app, so no mount but an
    // ordinary upload session.
    let config = br#"{"x":"b"}"#;
    let d = Digest::of(config);
    let res = t
        .req(
            "POST",
            &format!("/v2/team/copy/blobs/uploads/?mount={d}&from=other/app"),
            Some(&dev),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let res = t
        .req(
            "POST",
            &format!("/v2/team/copy/blobs/uploads/?mount={d}&from=other/app"),
            Some(&admin),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    // The catalog only lists what the caller may pull.
    let res = t.req("GET", "/v2/_catalog", Some(&dev), &[], vec![]).await;
    assert_eq!(
        body_json(res).await["repositories"],
        serde_json::json!(["team/app", "team/copy"])
    );
    let res = t
        .req("GET", "/v2/_catalog?n=1", Some(&dev), &[], vec![])
        .await;
    assert!(res.headers().contains_key("link"));
    assert_eq!(
        body_json(res).await["repositories"],
        serde_json::json!(["team/app"])
    );
    let res = t
        .req("GET", "/v2/_catalog", Some(&admin), &[], vec![])
        .await;
    assert_eq!(
        body_json(res).await["repositories"],
        serde_json::json!(["other/app", "team/app", "team/copy"])
    );
}

#[tokio::test]
async fn token_flow_grants_only_what_the_user_may_do() {
    let t = setup(&[], &[]);
    let dev = basic("dev", "dev-pw");
    // Wrong credentials at the token endpoint: 401.
    let (status, _) = t
        .token(Some(&basic("dev", "no")), &["repository:team/app:pull"])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, tok) = t
        .token(Some(&dev), &["repository:team/app:pull,push"])
        .await;
    assert_eq!(status, StatusCode::OK);
    let bearer = format!("Bearer {tok}");
    assert_eq!(
        t.push_image(&bearer, "team/app", "1", "a").await.status(),
        StatusCode::CREATED
    );
    let res = t
        .req(
            "GET",
            "/v2/team/app/manifests/1",
            Some(&bearer),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // The token is scoped: another repository needs another token.
    let res = t
        .req(
            "GET",
            "/v2/team/other/tags/list",
            Some(&bearer),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        www_auth(&res).contains(r#"scope="repository:team/other:pull",error="insufficient_scope""#)
    );

    // Asking for more than allowed: only the allowed part is granted.
    let (_, tok) = t
        .token(
            Some(&dev),
            &["repository:other/app:pull,push", "repository:team/x:pull"],
        )
        .await;
    let bearer = format!("Bearer {tok}");
    let res = t.push_image(&bearer, "other/app", "1", "b").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = t.push_image(&bearer, "team/x", "1", "b").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A pull-only token cannot push.
    let (_, tok) = t.token(Some(&dev), &["repository:team/app:pull"]).await;
    let res = t
        .push_image(&format!("Bearer {tok}"), "team/app", "2", "c")
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A forged or garbled token: 401 invalid_token.
    let res = t
        .req("GET", "/v2/", Some("Bearer a.b.c"), &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(www_auth(&res).contains(r#"error="invalid_token""#));

    // Catalog through a token needs registry:catalog:*.
    let (_, tok) = t.token(Some(&dev), &["registry:catalog:*"]).await;
    let res = t
        .req(
            "GET",
            "/v2/_catalog",
            Some(&format!("Bearer {tok}")),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        body_json(res).await["repositories"],
        serde_json::json!(["team/app"])
    );
    // Anonymous tokens carry nothing unless anonymous pull is configured.
    let (status, tok) = t.token(None, &["repository:team/app:pull"]).await;
    assert_eq!(status, StatusCode::OK);
    let res = t
        .req(
            "GET",
            "/v2/team/app/manifests/1",
            Some(&format!("Bearer {tok}")),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn anonymous_pull_is_an_explicit_loosening() {
    let t = setup(&[], &["public/*"]);
    let admin = basic("admin", "admin-pw");
    t.push_image(&admin, "public/app", "1", "a").await;
    t.push_image(&admin, "private/app", "1", "b").await;
    let res = t
        .req("GET", "/v2/public/app/manifests/1", None, &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = t
        .req("GET", "/v2/private/app/manifests/1", None, &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = t.push_image("Basic Og==", "public/app", "2", "c").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let (_, tok) = t.token(None, &["repository:public/app:pull,push"]).await;
    let bearer = format!("Bearer {tok}");
    let res = t
        .req(
            "GET",
            "/v2/public/app/manifests/1",
            Some(&bearer),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = t.push_image(&bearer, "public/app", "2", "c").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn immutable_tags_never_move() {
    let t = setup(&["prod/*"], &[]);
    let p = basic("prodpush", "prodpush-pw");
    let res = t.push_image(&p, "prod/app", "1.0", "a").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // The same manifest again: fine (skopeo retries, promotion re-runs).
    let res = t.push_image(&p, "prod/app", "1.0", "a").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // Another manifest under the tag: refused, naming the rule.
    let res = t.push_image(&p, "prod/app", "1.0", "b").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let err = body_json(res).await;
    assert_eq!(err["errors"][0]["code"], "DENIED");
    let msg = err["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("tag 1.0 of repository prod/app is immutable (rule: prod/*)"),
        "{msg}"
    );
    // New tags are fine; deleting a tag or a tagged manifest is refused.
    assert_eq!(
        t.push_image(&p, "prod/app", "1.1", "b").await.status(),
        StatusCode::CREATED
    );
    let res = t
        .req(
            "DELETE",
            "/v2/prod/app/manifests/1.0",
            Some(&p),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let d = Digest::of(&manifest(br#"{"x":"a"}"#));
    let res = t
        .req(
            "DELETE",
            &format!("/v2/prod/app/manifests/{d}"),
            Some(&p),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Outside the pattern, tags move.
    let admin = basic("admin", "admin-pw");
    t.push_image(&admin, "dev/app", "1.0", "a").await;
    assert_eq!(
        t.push_image(&admin, "dev/app", "1.0", "b").await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn pushes_tag_moves_and_deletes_are_audited() {
    let t = setup(&[], &[]);
    let admin = basic("admin", "admin-pw");
    t.push_image(&admin, "team/app", "1", "a").await;
    t.push_image(&admin, "team/app", "1", "b").await;
    let res = t
        .req(
            "DELETE",
            "/v2/team/app/manifests/1",
            Some(&admin),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // A refused push leaves no line.
    t.push_image(&basic("dev", "dev-pw"), "other/x", "1", "c")
        .await;

    let lines = t.audit_lines();
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "blob.push",
            "manifest.push",
            "blob.push",
            "manifest.push",
            "tag.delete"
        ]
    );
    let first = Digest::of(&manifest(br#"{"x":"a"}"#)).to_string();
    let second = Digest::of(&manifest(br#"{"x":"b"}"#)).to_string();
    let moved = &lines[3];
    assert_eq!(moved["user"], "admin");
    assert_eq!(moved["repository"], "team/app");
    assert_eq!(moved["reference"], "1");
    assert_eq!(moved["digest"], second.as_str());
    assert_eq!(moved["previous_digest"], first.as_str());
    assert!(chrono_like(moved["time"].as_str().unwrap()), "{moved}");
    assert_eq!(lines[4]["reference"], "1");
    let raw = std::fs::read_to_string(t.dir.path().join("root/audit.log")).unwrap();
    assert!(!raw.contains("admin-pw") && !raw.contains("Basic"), "{raw}");
}

/// RFC 3339 in UTC: `2026-01-02T03:04:05.678Z`.
fn chrono_like(s: &str) -> bool {
    s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T'
}
