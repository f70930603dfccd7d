//! `/images/...` against a real engine with the real `docker save` fixture.

mod common;

use std::path::Path;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::*;
use serde_json::json;

#[tokio::test]
async fn load_streams_progress_then_the_loaded_tags() {
    let api = api();
    let r = api
        .load_file("/v1.47/images/load?quiet=0", &fixture())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    let lines = r.lines();
    let (last, progress) = lines.split_last().expect("some lines");
    assert_eq!(*last, json!({"stream": "Loaded image: fixture/app:1\n"}));
    assert!(!progress.is_empty(), "no progress lines");
    for p in progress {
        assert_eq!(p["status"], "Loading layer", "{p}");
        assert_eq!(p["id"].as_str().expect("id").len(), 12, "{p}");
        let cur = p["progressDetail"]["current"].as_u64().expect("current");
        let total = p["progressDetail"]["total"].as_u64().expect("total");
        assert!(cur <= total && total > 0, "{p}");
        assert!(
            p["progress"].as_str().expect("progress").starts_with('['),
            "{p}"
        );
    }
    // The three layers of the fixture each report.
    let ids: std::collections::BTreeSet<&str> =
        progress.iter().filter_map(|p| p["id"].as_str()).collect();
    assert!(ids.contains("e9c807c5ab40"), "{ids:?}");
}

#[tokio::test]
async fn load_of_garbage_is_an_error_line_in_a_200_as_docker_answers() {
    let api = api();
    let r = api
        .call(
            Method::POST,
            "/images/load?quiet=1",
            Body::from(vec![7u8; 10_000]),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let lines = r.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let msg = lines[0]["error"].as_str().expect("error line");
    assert!(!msg.is_empty());
    assert_eq!(lines[0]["errorDetail"]["message"], msg);
    assert_eq!(api.get("/images/json").await.json(), json!([]));
}

#[tokio::test]
async fn load_failing_midway_ends_with_an_error_line() {
    let api = api();
    let data = std::fs::read(fixture()).expect("fixture");
    let truncated = data[..1_500_000].to_vec();
    let r = api
        .call(Method::POST, "/images/load?quiet=0", chunked(truncated))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let lines = r.lines();
    let last = lines.last().expect("lines");
    let msg = last["error"].as_str().expect("error line");
    assert_eq!(last["errorDetail"]["message"], msg);
    // Nothing half-loaded is listed.
    assert_eq!(api.get("/images/json").await.json(), json!([]));
}

#[tokio::test]
async fn load_reports_untagged_images_by_id() {
    let api = api();
    api.load_fixture().await;
    let saved = api.get(&format!("/images/{FIXTURE_ID}/get")).await;
    assert_eq!(saved.status, StatusCode::OK);
    let other = common::api();
    let r = other
        .call(
            Method::POST,
            "/images/load?quiet=1",
            chunked(saved.body.to_vec()),
        )
        .await;
    // Saved by ID: the archive names no tag (as Docker writes it); by tag: that tag.
    assert_eq!(
        r.lines(),
        vec![json!({"stream": format!("Loaded image ID: {FIXTURE_ID}\n")})]
    );
    let by_tag = api.get("/images/fixture%2Fapp:1/get").await;
    let r = other
        .call(
            Method::POST,
            "/images/load?quiet=1",
            chunked(by_tag.body.to_vec()),
        )
        .await;
    assert_eq!(
        r.lines(),
        vec![json!({"stream": "Loaded image: fixture/app:1\n"})]
    );
    let id = other.import_dangling("x").await;
    let saved = other.get(&format!("/images/get?names={id}")).await;
    let third = common::api();
    let r = third
        .call(
            Method::POST,
            "/images/load?quiet=true",
            chunked(saved.body.to_vec()),
        )
        .await;
    assert_eq!(
        r.lines(),
        vec![json!({"stream": format!("Loaded image ID: {id}\n")})]
    );
}

#[tokio::test]
async fn list_shows_dockers_image_summary() {
    let api = api();
    api.load_fixture().await;
    let v = api.get("/v1.47/images/json").await.json();
    let img = &v.as_array().expect("array")[0];
    assert_eq!(
        keys(img),
        [
            "Containers",
            "Created",
            "Id",
            "Labels",
            "ParentId",
            "RepoDigests",
            "RepoTags",
            "SharedSize",
            "Size"
        ]
    );
    assert_eq!(img["Id"], FIXTURE_ID);
    assert_eq!(img["RepoTags"], json!([FIXTURE_TAG]));
    assert_eq!(img["RepoDigests"], json!([]));
    assert_eq!(img["ParentId"], "");
    assert_eq!(img["SharedSize"], -1);
    assert_eq!(img["Containers"], -1);
    assert!(img["Created"].as_i64().expect("int") > 1_700_000_000);
    assert!(img["Size"].as_u64().expect("int") > 1_000_000);
    assert_eq!(img["Labels"]["team"], "platform");
    // Older API versions get VirtualSize too.
    let old = api.get("/v1.41/images/json").await.json();
    assert_eq!(old[0]["VirtualSize"], img["Size"]);
    // shared-size=1 computes SharedSize.
    let shared = api.get("/images/json?shared-size=1").await.json();
    assert_eq!(shared[0]["SharedSize"], 0);
}

#[tokio::test]
async fn dangling_images_show_as_none_for_old_clients_only() {
    let api = api();
    let id = api.import_dangling("hello").await;
    let new = api.get("/v1.47/images/json").await.json();
    assert_eq!(new[0]["Id"], id);
    assert_eq!(new[0]["RepoTags"], json!([]));
    assert_eq!(new[0]["RepoDigests"], json!([]));
    let old = api.get("/v1.41/images/json").await.json();
    assert_eq!(old[0]["RepoTags"], json!(["<none>:<none>"]));
    assert_eq!(old[0]["RepoDigests"], json!(["<none>@<none>"]));
}

#[tokio::test]
async fn filters_take_both_json_shapes() {
    let api = api();
    api.load_fixture().await;
    let dangling = api.import_dangling("d").await;
    let q = |f: &str| format!("/images/json?filters={}", urlencode(f));
    let ids = |v: serde_json::Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|i| i["Id"].as_str().expect("id").to_string())
            .collect()
    };
    for f in [r#"{"dangling":{"true":true}}"#, r#"{"dangling":["true"]}"#] {
        let r = api.get(&q(f)).await;
        assert_eq!(r.status, StatusCode::OK, "{f}");
        assert_eq!(ids(r.json()), std::slice::from_ref(&dangling), "{f}");
    }
    for f in [
        r#"{"dangling":{"false":true}}"#,
        r#"{"dangling":["false"]}"#,
    ] {
        assert_eq!(ids(api.get(&q(f)).await.json()), [FIXTURE_ID], "{f}");
    }
    for f in [
        r#"{"label":{"team=platform":true}}"#,
        r#"{"reference":["fixture/*"]}"#,
        r#"{"reference":{"fixture/app:1":true}}"#,
    ] {
        assert_eq!(ids(api.get(&q(f)).await.json()), [FIXTURE_ID], "{f}");
    }
    assert_eq!(
        ids(api.get(&q(r#"{"label":["team=other"]}"#)).await.json()),
        Vec::<String>::new()
    );
    // Bad JSON names the parameter; an unknown filter is refused by the engine.
    let r = api.get(&q("{nope")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("'filters'"), "{}", r.message());
    let r = api.get(&q(r#"{"colour":["blue"]}"#)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("colour"), "{}", r.message());
}

#[tokio::test]
async fn bad_booleans_name_the_parameter() {
    let api = api();
    api.load_fixture().await;
    for (uri, method, param) in [
        ("/images/json?all=maybe", Method::GET, "all"),
        ("/images/fixture/app:1?force=maybe", Method::DELETE, "force"),
        ("/images/load?quiet=yes", Method::POST, "quiet"),
    ] {
        let r = api.call(method, uri, Body::empty()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            r.message().contains(&format!("'{param}'")),
            "{}",
            r.message()
        );
    }
    // Docker's accepted forms.
    for v in ["1", "true", "True", "0", "false", ""] {
        assert_eq!(
            api.get(&format!("/images/json?all={v}")).await.status,
            StatusCode::OK,
            "{v}"
        );
    }
}

#[tokio::test]
async fn inspect_shows_the_image_config() {
    let api = api();
    api.load_fixture().await;
    for name in [FIXTURE_TAG, FIXTURE_ID, "60531c6e24d2", "fixture/app:1"] {
        let r = api.get(&format!("/images/{name}/json")).await;
        assert_eq!(r.status, StatusCode::OK, "{name}");
        assert_eq!(r.json()["Id"], FIXTURE_ID, "{name}");
    }
    let v = api.get("/v1.47/images/fixture/app:1/json").await.json();
    // Container and ContainerConfig stay in every version (Docker drops them from 1.45;
    // docker-compose 1.29's recreate reads ContainerConfig).
    assert_eq!(
        keys(&v),
        [
            "Architecture",
            "Author",
            "Comment",
            "Config",
            "Container",
            "ContainerConfig",
            "Created",
            "DockerVersion",
            "GraphDriver",
            "Id",
            "Metadata",
            "Os",
            "Parent",
            "RepoDigests",
            "RepoTags",
            "RootFS",
            "Size"
        ]
    );
    assert_eq!(v["RepoTags"], json!([FIXTURE_TAG]));
    assert_eq!(v["Created"], "2026-11-26T09:35:11.231520911Z");
    assert_eq!(v["DockerVersion"], "20.10.24+dfsg1");
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Os"], "linux");
    let c = &v["Config"];
    assert_eq!(c["Env"][1], "GREETING=hello");
    assert_eq!(c["Env"][2], "APP_HOME=/srv/app");
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], json!(["cat /srv/app/hello.txt"]));
    assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}}));
    assert_eq!(c["Labels"]["org.opencontainers.image.title"], "fixture-app");
    assert_eq!(c["User"], "");
    assert_eq!(c["Volumes"], serde_json::Value::Null);
    assert_eq!(
        c["Healthcheck"]["Test"],
        json!(["CMD", "/bin/cat", "/srv/app/hello.txt"])
    );
    assert_eq!(c["Healthcheck"]["Interval"], 2_000_000_000i64);
    assert_eq!(c["Healthcheck"]["Retries"], 2);
    assert_eq!(v["RootFS"]["Type"], "layers");
    assert_eq!(v["RootFS"]["Layers"].as_array().expect("layers").len(), 3);
    assert_eq!(
        v["RootFS"]["Layers"][0],
        "sha256:0f92fe07a1c2bfd34a63aae7c88b0fd566ab10dd3ec22f126ec60a29447d6d8a"
    );
    assert_eq!(v["GraphDriver"]["Name"], "overlayfs");
    let lower = v["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .expect("LowerDir");
    let dirs: Vec<&str> = lower.split(':').collect();
    assert_eq!(dirs.len(), 3);
    // Top layer first, as overlayfs wants it.
    assert!(
        dirs[0].ends_with("1754641482c4052f3c17878f482ff4c7721daba950be1ce43f00c82b918cc707"),
        "{lower}"
    );
    assert!(Path::new(dirs[2]).is_dir(), "{lower}");
    assert_eq!(v["Metadata"]["LastTagTime"], "0001-01-01T00:00:00Z");
    // Older clients also get VirtualSize, Container and ContainerConfig.
    let old = api.get("/v1.41/images/fixture/app:1/json").await.json();
    assert_eq!(old["VirtualSize"], v["Size"]);
    assert_eq!(
        old["Container"],
        "fcbb4095e88d8f04874ab850a2a38ece447ef5ace2c572f77f795a43a4c29278"
    );
    assert_eq!(old["ContainerConfig"]["Hostname"], "fcbb4095e88d");
}

#[tokio::test]
async fn unknown_images_are_404_with_dockers_message() {
    let api = api();
    let r = api.get("/images/nosuch:1/json").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.message(), "No such image: nosuch:1");
    assert_eq!(
        api.get("/images/nosuch:1/history").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.delete("/images/nosuch:1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.post("/images/nosuch:1/tag?repo=a&tag=b").await.status,
        StatusCode::NOT_FOUND
    );
    let r = api.get("/images/get?names=nosuch:1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.message(), "No such image: nosuch:1");
}

#[tokio::test]
async fn history_lists_layers_newest_first() {
    let api = api();
    api.load_fixture().await;
    let v = api.get("/images/fixture/app:1/history").await.json();
    let rows = v.as_array().expect("rows");
    assert_eq!(rows.len(), 9);
    assert_eq!(
        keys(&rows[0]),
        ["Comment", "Created", "CreatedBy", "Id", "Size", "Tags"]
    );
    assert_eq!(rows[0]["Id"], FIXTURE_ID);
    assert_eq!(rows[0]["Tags"], json!([FIXTURE_TAG]));
    assert!(rows[0]["CreatedBy"]
        .as_str()
        .expect("string")
        .contains("CMD"));
    assert_eq!(rows[1]["Id"], "<missing>");
    assert_eq!(rows[1]["Tags"], serde_json::Value::Null);
    assert_eq!(rows[8]["Comment"], "Imported from -");
    assert!(rows[8]["Size"].as_u64().expect("size") > 1_000_000);
    assert!(rows[0]["Created"].is_i64());
}

#[tokio::test]
async fn tag_then_remove() {
    let api = api();
    api.load_fixture().await;
    // What the docker CLI sends for `docker tag fixture/app:1 team/app:2`.
    let r = api
        .post("/images/fixture/app:1/tag?repo=docker.io%2Fteam%2Fapp&tag=2")
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.body.is_empty());
    let r = api
        .post(&format!(
            "/v1.41/images/{FIXTURE_ID}/tag?repo=reg:5000/a/b&tag=3"
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Names with slashes and ports in the path.
    for name in ["team/app:2", "reg:5000/a/b:3"] {
        let r = api.get(&format!("/images/{name}/json")).await;
        assert_eq!(r.status, StatusCode::OK, "{name}");
        assert_eq!(r.json()["Id"], FIXTURE_ID);
    }
    let tags = api.get("/images/json").await.json()[0]["RepoTags"].clone();
    assert_eq!(
        tags,
        json!(["fixture/app:1", "reg:5000/a/b:3", "team/app:2"])
    );
    assert_eq!(
        api.post("/images/fixture/app:1/tag").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.post("/images/fixture/app:1/tag?repo=UPPER")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // Removing one of several tags only untags.
    let r = api.delete("/images/team/app:2").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!([{"Untagged": "team/app:2"}]));
    // By ID with several tags: refused unless forced.
    let r = api.delete(&format!("/images/{FIXTURE_ID}")).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.message());
    assert!(r.message().contains("must be forced"), "{}", r.message());
    let r = api.delete("/images/reg:5000/a/b:3?force=0").await;
    assert_eq!(r.json(), json!([{"Untagged": "reg:5000/a/b:3"}]));
    let r = api
        .delete("/images/fixture/app:1?force=1&noprune=false")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!([{"Untagged": "fixture/app:1"}, {"Deleted": FIXTURE_ID}])
    );
    assert_eq!(api.get("/images/json").await.json(), json!([]));
}

#[tokio::test]
async fn prune_removes_dangling_images() {
    let api = api();
    api.load_fixture().await;
    let id = api.import_dangling("p").await;
    let r = api
        .post("/images/prune?filters=%7B%22dangling%22%3A%7B%22true%22%3Atrue%7D%7D")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(keys(&v), ["ImagesDeleted", "SpaceReclaimed"]);
    assert_eq!(v["ImagesDeleted"], json!([{"Deleted": id}]));
    assert!(v["SpaceReclaimed"].as_u64().expect("number") > 0);
    let v = api.post("/images/prune").await.json();
    assert_eq!(v, json!({"ImagesDeleted": null, "SpaceReclaimed": 0}));
    // dangling=false (docker image prune -a) takes the unused tagged ones too.
    let v = api
        .post("/images/prune?filters=%7B%22dangling%22%3A%5B%22false%22%5D%7D")
        .await
        .json();
    assert_eq!(
        v["ImagesDeleted"],
        json!([{"Untagged": FIXTURE_TAG}, {"Deleted": FIXTURE_ID}])
    );
}

#[tokio::test]
async fn save_streams_a_docker_archive_that_loads_back() {
    let api = api();
    api.load_fixture().await;
    for uri in [
        "/images/get?names=fixture/app:1",
        "/v1.41/images/fixture/app:1/get",
        "/images/get?names=fixture%2Fapp%3A1&names=60531c6e24d2",
    ] {
        let r = api.get(uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(r.headers["content-type"], "application/x-tar");
        let members = tar_members(&r.body);
        assert!(members.iter().any(|m| m == "manifest.json"), "{members:?}");
        let manifest: serde_json::Value =
            serde_json::from_slice(&tar_file(&r.body, "manifest.json")).expect("manifest");
        assert_eq!(manifest[0]["RepoTags"], json!([FIXTURE_TAG]), "{uri}");
        assert_eq!(manifest[0]["Layers"].as_array().expect("layers").len(), 3);
        // It loads back to the same image.
        let other = common::api();
        let r2 = other
            .call(
                Method::POST,
                "/images/load?quiet=1",
                chunked(r.body.to_vec()),
            )
            .await;
        assert_eq!(
            r2.lines(),
            vec![json!({"stream": "Loaded image: fixture/app:1\n"})]
        );
        assert_eq!(other.get("/images/json").await.json()[0]["Id"], FIXTURE_ID);
    }
    let r = api.get("/images/get?names=fixture/app:1&format=oci").await;
    assert_eq!(r.status, StatusCode::OK);
    let members = tar_members(&r.body);
    assert!(members.iter().any(|m| m == "oci-layout"), "{members:?}");
    assert!(members.iter().any(|m| m == "index.json"), "{members:?}");
    let r = api.get("/images/get?names=fixture/app:1&format=zip").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("'format'"));
    assert_eq!(api.get("/images/get").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn save_failing_midway_aborts_the_body() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let api = api();
    api.load_fixture().await;
    // Corrupt the top layer's blob (same size): saving verifies it after the 2 MB base
    // layer has been streamed, so the failure comes after the status was sent.
    let blob = api.engine.config().root.join(
        "content/blobs/sha256/1754641482c4052f3c17878f482ff4c7721daba950be1ce43f00c82b918cc707",
    );
    let len = std::fs::metadata(&blob).expect("top layer blob").len();
    let mut perms = std::fs::metadata(&blob).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).expect("chmod");
    std::fs::write(&blob, vec![0u8; len as usize]).expect("corrupt");
    let req = axum::http::Request::get("/images/get?names=fixture/app:1")
        .body(Body::empty())
        .expect("req");
    let resp = api.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let res = resp.into_body().collect().await;
    assert!(
        res.is_err(),
        "a failed save must not end like a complete archive"
    );
}

#[tokio::test]
async fn import_creates_an_image_with_changes() {
    let api = api();
    let uri = "/images/create?fromSrc=-&repo=imp%2Fx&tag=1&message=my%20msg\
               &changes=CMD%20%5B%22%2Fhello%22%5D&changes=ENV%20A%3Db&platform=linux%2Famd64";
    let r = api
        .call(Method::POST, uri, Body::from(rootfs_tar("hi")))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let lines = r.lines();
    assert_eq!(lines.len(), 1);
    let id = lines[0]["status"].as_str().expect("status");
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let v = api.get("/images/imp/x:1/json").await.json();
    assert_eq!(v["Id"], id);
    assert_eq!(v["Config"]["Cmd"], json!(["/hello"]));
    assert_eq!(v["Config"]["Env"], json!(["A=b"]));
    assert_eq!(v["Comment"], "my msg");
    // repo may carry the tag itself, as the docker CLI sends it.
    let r = api
        .call(
            Method::POST,
            "/images/create?fromSrc=-&repo=imp%2Fy%3A2",
            Body::from(rootfs_tar("y")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(api.get("/images/imp/y:2/json").await.status, StatusCode::OK);
}

#[tokio::test]
async fn create_refuses_pull_and_urls() {
    let api = api();
    let r = api
        .post("/images/create?fromImage=busybox&tag=latest")
        .await;
    // No registry is allowed by default: refused before anything is fetched.
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.message().starts_with(
            "image docker.io/library/busybox:latest: registry docker.io is not allowed by policy"
        ),
        "{}",
        r.message()
    );
    let r = api
        .post("/images/create?fromSrc=http%3A%2F%2Fexample.com%2Fx.tar")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.message().contains("berth does not fetch URLs"),
        "{}",
        r.message()
    );
    assert_eq!(
        api.post("/images/create").await.status,
        StatusCode::BAD_REQUEST
    );
    let r = api
        .call(
            Method::POST,
            "/images/create?fromSrc=-",
            Body::from(vec![1u8; 3000]),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = api.post("/images/nothing/here/push?tag=1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.message());
    assert!(
        r.message()
            .contains("An image does not exist locally with the tag"),
        "{}",
        r.message()
    );
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
