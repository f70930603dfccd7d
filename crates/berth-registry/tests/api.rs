//! The OCI Distribution API driven through the router (no sockets): uploads, mounts,
//! manifests, listings, referrers, delete and GC, with the statuses and error codes the
//! spec prescribes.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use berth_registry::auth::{add_user, AccessConfig, UserPerms};
use berth_registry::{router, App, Registry, RegistryConfig};
use berth_types::{media, Digest};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

struct T {
    _dir: tempfile::TempDir,
    reg: Arc<Registry>,
    app: Arc<App>,
}

/// Basic credentials of `admin:pw`, who may do everything.
const ADMIN: &str = "Basic YWRtaW46cHc=";

fn setup(delete_enabled: bool) -> T {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let reg = Registry::open(
        &root,
        RegistryConfig {
            delete_enabled,
            ..Default::default()
        },
    )
    .unwrap();
    T::on(dir, reg)
}

impl T {
    /// `reg` served with the user `admin` (password `pw`) allowed everything.
    fn on(dir: tempfile::TempDir, reg: Registry) -> T {
        let reg = Arc::new(reg);
        let root = reg.root().to_path_buf();
        if !root.join("users.toml").exists() {
            let all = vec!["*".to_string()];
            let perms = UserPerms {
                pull: all.clone(),
                push: all.clone(),
                delete: all,
            };
            add_user(&root, "admin", "pw", &perms).unwrap();
        }
        let app = Arc::new(App::open(reg.clone(), AccessConfig::default(), false).unwrap());
        T {
            _dir: dir,
            reg,
            app,
        }
    }

    async fn req(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Response<Body> {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            b = b.header("authorization", ADMIN);
        }
        router(self.app.clone())
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap()
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        let res = self
            .req(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        d
    }

    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        json: &serde_json::Value,
    ) -> Response<Body> {
        self.req(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            serde_json::to_vec(json).unwrap(),
        )
        .await
    }
}

fn header(res: &Response<Body>, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn body(res: Response<Body>) -> Vec<u8> {
    res.into_body().collect().await.unwrap().to_bytes().to_vec()
}

async fn error_code(res: Response<Body>) -> String {
    let v: serde_json::Value = serde_json::from_slice(&body(res).await).unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_string()
}

fn image_manifest(config: &Digest, layers: &[Digest]) -> serde_json::Value {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config.to_string(), "size": 2},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": media::OCI_LAYER_GZIP, "digest": l.to_string(), "size": 1
        })).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn base_endpoint_announces_the_api_version() {
    let t = setup(false);
    let res = t.req("GET", "/v2/", &[], vec![]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(&res, "docker-distribution-api-version"),
        "registry/2.0"
    );
}

#[tokio::test]
async fn monolithic_upload_then_head_and_get_with_range() {
    let t = setup(false);
    let data = b"hello registry".to_vec();
    let d = t.push_blob("team/app", &data).await;
    let res = t
        .req("HEAD", &format!("/v2/team/app/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-length"), data.len().to_string());
    assert_eq!(header(&res, "docker-content-digest"), d.to_string());
    let res = t
        .req("GET", &format!("/v2/team/app/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(body(res).await, data);
    let res = t
        .req(
            "GET",
            &format!("/v2/team/app/blobs/{d}"),
            &[("range", "bytes=6-13")],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&res, "content-range"),
        format!("bytes 6-13/{}", data.len())
    );
    assert_eq!(body(res).await, b"registry");
    let res = t
        .req(
            "GET",
            &format!("/v2/team/app/blobs/{d}"),
            &[("range", "bytes=100-")],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    // Only the repository it was pushed into sees it.
    let res = t
        .req("HEAD", &format!("/v2/other/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = t
        .req("GET", &format!("/v2/other/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(error_code(res).await, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload_with_status_and_out_of_order_chunk() {
    let t = setup(false);
    let res = t.req("POST", "/v2/app/blobs/uploads/", &[], vec![]).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let loc = header(&res, "location");
    let uuid = header(&res, "docker-upload-uuid");
    assert_eq!(loc, format!("/v2/app/blobs/uploads/{uuid}"));
    assert_eq!(header(&res, "range"), "0-0");

    let res = t
        .req(
            "PATCH",
            &loc,
            &[("content-range", "0-4"), ("content-length", "5")],
            b"01234".to_vec(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&res, "range"), "0-4");

    // A chunk that does not start where the upload ends: 416, the upload is kept.
    let res = t
        .req(
            "PATCH",
            &loc,
            &[("content-range", "7-9"), ("content-length", "3")],
            b"789".to_vec(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(error_code(res).await, "BLOB_UPLOAD_INVALID");

    let res = t.req("GET", &loc, &[], vec![]).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&res, "range"), "0-4");

    // A chunk without Content-Range (streamed) is appended too.
    let res = t.req("PATCH", &loc, &[], b"56".to_vec()).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&res, "range"), "0-6");

    let d = Digest::of(b"0123456789");
    let res = t
        .req("PUT", &format!("{loc}?digest={d}"), &[], b"789".to_vec())
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(header(&res, "docker-content-digest"), d.to_string());
    assert_eq!(header(&res, "location"), format!("/v2/app/blobs/{d}"));
    let res = t
        .req("GET", &format!("/v2/app/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(body(res).await, b"0123456789");
    // The session is gone.
    let res = t.req("GET", &loc, &[], vec![]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn digest_mismatch_is_refused_and_nothing_is_published() {
    let t = setup(false);
    let wrong = Digest::of(b"something else");
    let res = t
        .req(
            "POST",
            &format!("/v2/app/blobs/uploads/?digest={wrong}"),
            &[],
            b"actual".to_vec(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(res).await, "DIGEST_INVALID");
    let actual = Digest::of(b"actual");
    for d in [wrong, actual] {
        let res = t
            .req("HEAD", &format!("/v2/app/blobs/{d}"), &[], vec![])
            .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    let blobs = t.reg.root().join("content/blobs/sha256");
    assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(t.reg.root().join("content/ingest"))
            .unwrap()
            .count(),
        0
    );

    // Same through a session closed with the wrong digest.
    let res = t.req("POST", "/v2/app/blobs/uploads/", &[], vec![]).await;
    let loc = header(&res, "location");
    let res = t
        .req(
            "PUT",
            &format!("{loc}?digest={wrong}"),
            &[],
            b"actual".to_vec(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(res).await, "DIGEST_INVALID");
    // Other algorithms are refused by name.
    let res = t
        .req("HEAD", "/v2/app/blobs/sha512:abcd", &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn cancelled_upload_is_gone() {
    let t = setup(false);
    let res = t.req("POST", "/v2/app/blobs/uploads/", &[], vec![]).await;
    let loc = header(&res, "location");
    let res = t.req("DELETE", &loc, &[], vec![]).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = t.req("PATCH", &loc, &[], b"x".to_vec()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // A session belongs to its repository.
    let res = t.req("POST", "/v2/app/blobs/uploads/", &[], vec![]).await;
    let uuid = header(&res, "docker-upload-uuid");
    let res = t
        .req(
            "GET",
            &format!("/v2/other/blobs/uploads/{uuid}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cross_repository_mount() {
    let t = setup(false);
    let d = t.push_blob("base/os", b"layer bytes").await;
    let res = t
        .req(
            "POST",
            &format!("/v2/team/app/blobs/uploads/?mount={d}&from=base/os"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(header(&res, "location"), format!("/v2/team/app/blobs/{d}"));
    let res = t
        .req("HEAD", &format!("/v2/team/app/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // From a repository without the blob: an upload session instead.
    let missing = Digest::of(b"nope");
    let res = t
        .req(
            "POST",
            &format!("/v2/team/app/blobs/uploads/?mount={missing}&from=base/os"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert!(!header(&res, "docker-upload-uuid").is_empty());
    // One copy on disk for both repositories.
    assert_eq!(
        std::fs::read_dir(t.reg.root().join("content/blobs/sha256"))
            .unwrap()
            .count(),
        1
    );
}

#[tokio::test]
async fn manifests_by_tag_and_digest_and_missing_blobs() {
    let t = setup(false);
    let config = t.push_blob("app", b"{}").await;
    let layer = t.push_blob("app", b"layer").await;
    let missing = Digest::of(b"never pushed");

    let m = image_manifest(&config, &[layer, missing]);
    let res = t.push_manifest("app", "1", media::OCI_MANIFEST, &m).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(&body(res).await).unwrap();
    assert_eq!(v["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains(&missing.to_string()));

    // A blob of another repository does not count.
    let foreign = t.push_blob("other", b"other layer").await;
    let res = t
        .push_manifest(
            "app",
            "1",
            media::OCI_MANIFEST,
            &image_manifest(&config, &[foreign]),
        )
        .await;
    assert_eq!(error_code(res).await, "MANIFEST_BLOB_UNKNOWN");

    let m = image_manifest(&config, &[layer]);
    let bytes = serde_json::to_vec(&m).unwrap();
    let digest = Digest::of(&bytes);
    let res = t.push_manifest("app", "1", media::OCI_MANIFEST, &m).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(header(&res, "docker-content-digest"), digest.to_string());
    assert_eq!(
        header(&res, "location"),
        format!("/v2/app/manifests/{digest}")
    );

    for reference in ["1".to_string(), digest.to_string()] {
        let res = t
            .req(
                "GET",
                &format!("/v2/app/manifests/{reference}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "content-type"), media::OCI_MANIFEST);
        assert_eq!(header(&res, "docker-content-digest"), digest.to_string());
        assert_eq!(body(res).await, bytes, "stored verbatim");
    }
    let res = t.req("HEAD", "/v2/app/manifests/1", &[], vec![]).await;
    assert_eq!(header(&res, "content-length"), bytes.len().to_string());
    let res = t.req("GET", "/v2/app/manifests/2", &[], vec![]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "MANIFEST_UNKNOWN");

    // Pushed by a digest it does not have.
    let res = t
        .push_manifest("app", &missing.to_string(), media::OCI_MANIFEST, &m)
        .await;
    assert_eq!(error_code(res).await, "DIGEST_INVALID");
    // Not JSON, and a Content-Type contradicting mediaType.
    let res = t
        .req(
            "PUT",
            "/v2/app/manifests/x",
            &[("content-type", media::OCI_MANIFEST)],
            b"{".to_vec(),
        )
        .await;
    assert_eq!(error_code(res).await, "MANIFEST_INVALID");
    let res = t
        .push_manifest("app", "x", media::DOCKER_MANIFEST, &m)
        .await;
    assert_eq!(error_code(res).await, "MANIFEST_INVALID");
    // Invalid tag and name.
    let res = t
        .push_manifest("app", ".bad", media::OCI_MANIFEST, &m)
        .await;
    assert_eq!(error_code(res).await, "TAG_INVALID");
    let res = t.push_manifest("App", "1", media::OCI_MANIFEST, &m).await;
    assert_eq!(error_code(res).await, "NAME_INVALID");

    // An index needs its child manifests in the repository.
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": digest.to_string(), "size": bytes.len()}],
    });
    let res = t
        .push_manifest("app", "multi", media::OCI_INDEX, &index)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = t
        .push_manifest("other", "multi", media::OCI_INDEX, &index)
        .await;
    assert_eq!(error_code(res).await, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn tags_and_catalog_paginate_with_link_headers() {
    let t = setup(false);
    let config = t.push_blob("app", b"{}").await;
    let m = image_manifest(&config, &[]);
    for tag in ["c", "a", "b", "d"] {
        let res = t.push_manifest("app", tag, media::OCI_MANIFEST, &m).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let res = t.req("GET", "/v2/app/tags/list", &[], vec![]).await;
    let v: serde_json::Value = serde_json::from_slice(&body(res).await).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"name": "app", "tags": ["a", "b", "c", "d"]})
    );

    let res = t.req("GET", "/v2/app/tags/list?n=2", &[], vec![]).await;
    assert_eq!(
        header(&res, "link"),
        "</v2/app/tags/list?n=2&last=b>; rel=\"next\""
    );
    let v: serde_json::Value = serde_json::from_slice(&body(res).await).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["a", "b"]));
    let res = t
        .req("GET", "/v2/app/tags/list?n=2&last=b", &[], vec![])
        .await;
    assert_eq!(header(&res, "link"), "");
    let v: serde_json::Value = serde_json::from_slice(&body(res).await).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["c", "d"]));

    let res = t.req("GET", "/v2/nothing/tags/list", &[], vec![]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "NAME_UNKNOWN");

    t.push_blob("zeta/x", b"1").await;
    t.push_blob("beta", b"2").await;
    let res = t.req("GET", "/v2/_catalog?n=2", &[], vec![]).await;
    assert_eq!(
        header(&res, "link"),
        "</v2/_catalog?n=2&last=beta>; rel=\"next\""
    );
    let v: serde_json::Value = serde_json::from_slice(&body(res).await).unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["app", "beta"]));
    let res = t
        .req("GET", "/v2/_catalog?n=2&last=beta", &[], vec![])
        .await;
    let v: serde_json::Value = serde_json::from_slice(&body(res).await).unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["zeta/x"]));
}

#[tokio::test]
async fn referrers_list_manifests_whose_subject_is_the_digest() {
    let t = setup(false);
    let config = t.push_blob("app", b"{}").await;
    let image = image_manifest(&config, &[]);
    let image_bytes = serde_json::to_vec(&image).unwrap();
    let image_digest = Digest::of(&image_bytes);
    t.push_manifest("app", "1", media::OCI_MANIFEST, &image)
        .await;

    let sig_config = t.push_blob("app", b"{\"sig\":1}").await;
    let mut sig = image_manifest(&sig_config, &[]);
    sig["artifactType"] = "application/vnd.example.sig".into();
    sig["subject"] = serde_json::json!({"mediaType": media::OCI_MANIFEST, "digest": image_digest.to_string(), "size": image_bytes.len()});
    sig["annotations"] = serde_json::json!({"org.example.kind": "signature"});
    let sig_bytes = serde_json::to_vec(&sig).unwrap();
    let res = t
        .push_manifest(
            "app",
            &Digest::of(&sig_bytes).to_string(),
            media::OCI_MANIFEST,
            &sig,
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(header(&res, "oci-subject"), image_digest.to_string());

    let res = t
        .req(
            "GET",
            &format!("/v2/app/referrers/{image_digest}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-type"), media::OCI_INDEX);
    let v: serde_json::Value = serde_json::from_slice(&body(res).await).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["manifests"][0]["digest"],
        Digest::of(&sig_bytes).to_string()
    );
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    assert_eq!(
        v["manifests"][0]["annotations"]["org.example.kind"],
        "signature"
    );

    let res = t
        .req(
            "GET",
            &format!("/v2/app/referrers/{image_digest}?artifactType=other/type"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(header(&res, "oci-filters-applied"), "artifactType");
    let v: serde_json::Value = serde_json::from_slice(&body(res).await).unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));
}

#[tokio::test]
async fn delete_is_off_by_default() {
    let t = setup(false);
    let d = t.push_blob("app", b"x").await;
    let res = t
        .req("DELETE", &format!("/v2/app/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(res).await, "UNSUPPORTED");
    let res = t.req("DELETE", "/v2/app/manifests/1", &[], vec![]).await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let res = t
        .req("HEAD", &format!("/v2/app/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn delete_when_enabled_then_gc_frees_only_unreferenced_blobs() {
    let t = setup(true);
    let config = t.push_blob("app", b"{}").await;
    let layer = t.push_blob("app", b"layer").await;
    let loose = t.push_blob("app", b"loose").await;
    let shared = t.push_blob("other", b"loose").await;
    assert_eq!(loose, shared);
    let m = image_manifest(&config, &[layer]);
    let md = Digest::of(&serde_json::to_vec(&m).unwrap());
    t.push_manifest("app", "1", media::OCI_MANIFEST, &m).await;

    // Deleting the layer's link: the manifest still references it, GC keeps it.
    let res = t
        .req("DELETE", &format!("/v2/app/blobs/{layer}"), &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let res = t
        .req("DELETE", &format!("/v2/app/blobs/{loose}"), &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let report = t.reg.gc().unwrap();
    assert!(report.blobs_removed.is_empty(), "{report:?}");

    // An upload in progress survives GC.
    let res = t.req("POST", "/v2/app/blobs/uploads/", &[], vec![]).await;
    let loc = header(&res, "location");
    t.req("PATCH", &loc, &[], b"half".to_vec()).await;

    let res = t
        .req("DELETE", &format!("/v2/other/blobs/{loose}"), &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let res = t
        .req("DELETE", &format!("/v2/app/manifests/{md}"), &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let res = t.req("GET", "/v2/app/manifests/1", &[], vec![]).await;
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "tags of a deleted manifest go too"
    );

    let report = t.reg.gc().unwrap();
    let mut removed = report.blobs_removed.clone();
    removed.sort();
    let mut expected = vec![loose, layer, md];
    expected.sort();
    assert_eq!(removed, expected);
    // config is still linked in app.
    let res = t
        .req("HEAD", &format!("/v2/app/blobs/{config}"), &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // The upload goes on.
    let d = Digest::of(b"half and done");
    let res = t
        .req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[],
            b" and done".to_vec(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn state_survives_reopening_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let d;
    {
        let t = T::on(
            tempfile::tempdir().unwrap(),
            Registry::open(&root, RegistryConfig::default()).unwrap(),
        );
        let config = t.push_blob("app", b"{}").await;
        d = config;
        t.push_manifest(
            "app",
            "1",
            media::OCI_MANIFEST,
            &image_manifest(&config, &[]),
        )
        .await;
        // A second registry on the same root is refused while the first holds it.
        assert!(Registry::open(&root, RegistryConfig::default()).is_err());
    }
    let t = T::on(
        dir,
        Registry::open(&root, RegistryConfig::default()).unwrap(),
    );
    let res = t.req("GET", "/v2/app/manifests/1", &[], vec![]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = t
        .req("HEAD", &format!("/v2/app/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}
