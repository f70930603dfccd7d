//! `/_ping`, `/version`, `/info`, `/system/df`, the version prefix, unknown routes.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::*;

#[tokio::test]
async fn ping_answers_ok_with_docker_headers() {
    let api = api();
    for method in [Method::GET, Method::HEAD] {
        let r = api.call(method.clone(), "/_ping", Body::empty()).await;
        assert_eq!(r.status, StatusCode::OK);
        if method == Method::GET {
            assert_eq!(&r.body[..], b"OK");
        }
        let h = |n: &str| {
            r.headers
                .get(n)
                .map(|v| v.to_str().expect("ascii").to_string())
        };
        assert_eq!(h("api-version").as_deref(), Some(berth_api::API_VERSION));
        assert_eq!(h("docker-experimental").as_deref(), Some("false"));
        assert_eq!(h("ostype").as_deref(), Some("linux"));
        assert_eq!(
            h("cache-control").as_deref(),
            Some("no-cache, no-store, must-revalidate")
        );
        assert_eq!(h("pragma").as_deref(), Some("no-cache"));
        assert!(h("builder-version").is_some());
        assert!(h("server").expect("server header").starts_with("berth/"));
    }
}

#[tokio::test]
async fn version_has_dockers_shape() {
    let api = api();
    let r = api.get("/v1.47/version").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    // BuildTime is there only when the build recorded one (as Docker's omitempty).
    let mut k = keys(&v);
    k.retain(|k| k != "BuildTime");
    assert_eq!(
        k,
        [
            "ApiVersion",
            "Arch",
            "Components",
            "GitCommit",
            "GoVersion",
            "KernelVersion",
            "MinAPIVersion",
            "Os",
            "Platform",
            "Version"
        ]
    );
    assert_eq!(v["ApiVersion"], berth_api::API_VERSION);
    assert_eq!(v["MinAPIVersion"], berth_api::MIN_API_VERSION);
    assert_eq!(v["Platform"]["Name"], "berth");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
    assert!(!v["KernelVersion"].as_str().expect("string").is_empty());
    let c = &v["Components"][0];
    assert_eq!(c["Name"], "Engine");
    // Docker's Details is map[string]string: a non-string value breaks `docker version`.
    for (k, val) in c["Details"].as_object().expect("details") {
        assert!(val.is_string(), "Details.{k} is not a string");
    }
    assert_eq!(c["Details"]["ApiVersion"], berth_api::API_VERSION);
}

#[tokio::test]
async fn info_has_the_fields_docker_info_decodes() {
    let api = api();
    api.load_fixture().await;
    let v = api.get("/info").await.json();
    let want = [
        "Architecture",
        "BerthHost",
        "BridgeNfIp6tables",
        "BridgeNfIptables",
        "CDISpecDirs",
        "CPUSet",
        "CPUShares",
        "CgroupDriver",
        "CgroupVersion",
        "ContainerdCommit",
        "Containers",
        "ContainersPaused",
        "ContainersRunning",
        "ContainersStopped",
        "CpuCfsPeriod",
        "CpuCfsQuota",
        "Debug",
        "DefaultRuntime",
        "DockerRootDir",
        "Driver",
        "DriverStatus",
        "ExperimentalBuild",
        "GenericResources",
        "HttpProxy",
        "HttpsProxy",
        "ID",
        "IPv4Forwarding",
        "Images",
        "IndexServerAddress",
        "InitBinary",
        "InitCommit",
        "Isolation",
        "KernelMemory",
        "KernelMemoryTCP",
        "KernelVersion",
        "Labels",
        "LiveRestoreEnabled",
        "LoggingDriver",
        "MemTotal",
        "MemoryLimit",
        "NCPU",
        "NEventsListener",
        "NFd",
        "NGoroutines",
        "Name",
        "NoProxy",
        "OSType",
        "OSVersion",
        "OomKillDisable",
        "OperatingSystem",
        "PidsLimit",
        "Plugins",
        "RegistryConfig",
        "RuncCommit",
        "Runtimes",
        "SecurityOptions",
        "ServerVersion",
        "SwapLimit",
        "Swarm",
        "SystemTime",
        "Warnings",
    ];
    assert_eq!(
        keys(&v),
        want.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(v["Images"], 1);
    assert_eq!(v["Containers"], 0);
    assert_eq!(v["Driver"], "overlayfs");
    assert_eq!(v["DriverStatus"][0][0], "Backing Filesystem");
    assert_eq!(v["OSType"], "linux");
    assert_eq!(v["DefaultRuntime"], "berth");
    assert_eq!(v["Runtimes"]["berth"]["path"], "libcontainer");
    assert_eq!(
        v["Plugins"]["Network"],
        serde_json::json!(["bridge", "host", "null"])
    );
    assert_eq!(v["Swarm"]["LocalNodeState"], "inactive");
    assert_eq!(
        v["DockerRootDir"],
        api.engine.config().root.display().to_string()
    );
    assert!(["1", "2"].contains(&v["CgroupVersion"].as_str().expect("string")));
    assert!(v["NCPU"].as_u64().expect("number") >= 1);
    assert!(v["MemTotal"].as_u64().expect("number") > 0);
    assert!(v["LiveRestoreEnabled"].is_boolean());
    // Only what the host lacks (nothing about networks: the default one is a bridge, as
    // Docker's); null when it lacks nothing.
    let lacks = api.engine.host().warnings();
    if lacks.is_empty() {
        assert!(v["Warnings"].is_null(), "{}", v["Warnings"]);
    } else {
        assert_eq!(v["Warnings"], serde_json::json!(lacks));
    }
    // The ID is stable across calls (tools key on it).
    assert_eq!(api.get("/info").await.json()["ID"], v["ID"]);
}

#[tokio::test]
async fn version_prefix_is_checked_and_stripped() {
    let api = api();
    for uri in ["/v1.24/_ping", "/v1.41/_ping", "/v1.47/_ping", "/_ping"] {
        assert_eq!(api.get(uri).await.status, StatusCode::OK, "{uri}");
    }
    let r = api.get("/v1.99/version").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.message(),
        format!(
            "client version 1.99 is too new. Maximum supported API version is {}",
            berth_api::API_VERSION
        )
    );
    let r = api.get("/v1.12/version").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r
        .message()
        .starts_with("client version 1.12 is too old. Minimum supported API version is 1.24"));
    // The version keeps its query string.
    let r = api
        .get("/v1.41/images/json?filters=%7B%22dangling%22%3A%5B%22true%22%5D%7D")
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_are_docker_404s() {
    let api = api();
    for uri in [
        "/nope",
        "/v1.41/nope",
        "/containers/x/nope",
        "/images/justaname",
    ] {
        let r = api.get(uri).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(
            r.json(),
            serde_json::json!({"message": "page not found"}),
            "{uri}"
        );
        assert_eq!(
            r.headers.get("api-version").map(|v| v.as_bytes()),
            Some(berth_api::API_VERSION.as_bytes())
        );
    }
    let r = api.post("/images/json").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.json()["message"].is_string());
}

#[tokio::test]
async fn system_df_lists_images_and_empty_kinds() {
    let api = api();
    api.load_fixture().await;
    let v = api.get("/system/df").await.json();
    assert_eq!(
        keys(&v),
        [
            "BuildCache",
            "Containers",
            "Images",
            "LayersSize",
            "Volumes"
        ]
    );
    assert!(v["LayersSize"].as_u64().expect("number") > 0);
    assert_eq!(v["Containers"], serde_json::json!([]));
    assert_eq!(v["Volumes"], serde_json::json!([]));
    assert_eq!(v["BuildCache"], serde_json::json!([]));
    let img = &v["Images"][0];
    assert_eq!(img["Id"], FIXTURE_ID);
    assert_eq!(img["SharedSize"], 0);
    assert_eq!(img["Containers"], 0);
    assert!(img["Size"].as_u64().expect("number") > 0);
    // `type` narrows the answer.
    let v = api.get("/system/df?type=image").await.json();
    assert_eq!(keys(&v), ["Images", "LayersSize"]);
    assert_eq!(
        api.get("/system/df?type=bogus").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn serve_answers_on_a_unix_socket_and_shuts_down() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = api();
    let sock = api.root.path().join("api.sock");
    let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(berth_api::serve(api.engine.clone(), listener, async {
        let _ = stop_rx.await;
    }));
    let mut s = tokio::net::UnixStream::connect(&sock)
        .await
        .expect("connect");
    s.write_all(b"GET /v1.41/_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.to_ascii_lowercase().contains("api-version: "), "{out}");
    assert!(out.ends_with("OK"), "{out}");
    stop_tx.send(()).expect("server still running");
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("serve returns after shutdown")
        .expect("task")
        .expect("serve ok");
}
