//! Request bodies are decoded as Docker's Go decoder does, for every field: a generated
//! walk over full bodies of container create, container update and volume create sends
//! each field as `null` (the result must equal the body without the
//! field) and each key in lower case and in upper case (the result must equal the
//! original body's), and compares what the daemon made (the inspect document).

#![recursion_limit = "256"]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::*;
use serde_json::{json, Map, Value};
use tower::ServiceExt;

/// Maps whose keys are data (label names, paths, ports, network names), never folded.
const DATA_MAPS: [&str; 9] = [
    "Labels",
    "Volumes",
    "ExposedPorts",
    "Tmpfs",
    "Sysctls",
    "Config",
    "Options",
    "DriverOpts",
    "EndpointsConfig",
];

/// A key path into a body: object keys (and array indexes).
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every path to an object member of `v` (not inside data maps' keys, but into their
/// values' objects).
fn paths(v: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>, data: bool) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(Step::Key(k.clone()));
                if !data {
                    out.push(prefix.clone());
                }
                paths(child, prefix, out, DATA_MAPS.contains(&k.as_str()));
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(Step::Index(i));
                paths(child, prefix, out, false);
                prefix.pop();
            }
        }
        _ => {}
    }
}

/// Applies `f` to the object holding the last key of `path` and that key.
fn edit(v: &mut Value, path: &[Step], f: &dyn Fn(&mut Map<String, Value>, &str)) {
    let (last, rest) = path.split_last().expect("non-empty path");
    let mut cur = v;
    for s in rest {
        cur = match s {
            Step::Key(k) => cur.get_mut(k).expect("key"),
            Step::Index(i) => cur.get_mut(*i).expect("index"),
        };
    }
    if let (Step::Key(k), Value::Object(m)) = (last, cur) {
        f(m, k);
    }
}

fn show(path: &[Step]) -> String {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => k.clone(),
            Step::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The variants of `body` for one path: (`null` there, the key removed), (lower-case
/// key, original), (upper-case key, original).
fn variants(body: &Value, path: &[Step]) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    let mut nulled = body.clone();
    edit(&mut nulled, path, &|m, k| {
        m.insert(k.to_string(), Value::Null);
    });
    let mut absent = body.clone();
    edit(&mut absent, path, &|m, k| {
        m.remove(k);
    });
    out.push((format!("{} = null", show(path)), nulled, absent));
    for (name, fold) in [
        ("lower", str::to_ascii_lowercase as fn(&str) -> String),
        ("upper", str::to_ascii_uppercase),
    ] {
        let mut folded = body.clone();
        edit(&mut folded, path, &|m, k| {
            if let Some(v) = m.remove(k) {
                m.insert(fold(k), v);
            }
        });
        out.push((
            format!("{} in {name} case", show(path)),
            folded,
            body.clone(),
        ));
    }
    out
}

async fn send(api: &Api, method: Method, uri: &str, body: &Value) -> Resp {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = api.app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

/// What a create made, without what differs between any two containers.
async fn created(api: &Api, r: &Resp) -> Value {
    if r.status != StatusCode::CREATED {
        return json!({"status": r.status.as_u16(), "message": r.message()});
    }
    let id = r.json()["Id"].as_str().expect("id").to_string();
    let doc = api.get(&format!("/containers/{id}/json")).await.json();
    api.call(
        Method::DELETE,
        &format!("/containers/{id}?v=1&force=1"),
        Body::empty(),
    )
    .await;
    let text = doc
        .to_string()
        .replace(&id, "ID")
        .replace(&id[..12], "SHORT");
    let mut doc: Value = serde_json::from_str(&text).expect("json");
    // Anonymous volumes have names of their own.
    for m in doc["Mounts"].as_array_mut().into_iter().flatten() {
        if m["Type"] == "volume" {
            m["Name"] = Value::Null;
            m["Source"] = Value::Null;
        }
    }
    json!({"Config": doc["Config"], "HostConfig": doc["HostConfig"], "Mounts": doc["Mounts"]})
}

#[tokio::test]
async fn every_create_field_decodes_as_docker_decodes_it() {
    let api = api();
    api.load_fixture().await;
    let bind = api.root.path().join("bind");
    std::fs::create_dir_all(&bind).expect("bind dir");
    let body = json!({
        "Image": FIXTURE_TAG,
        "Cmd": ["sleep", "1"],
        "Entrypoint": ["sh", "-c"],
        "Env": ["A=1", "B=2"],
        "WorkingDir": "/tmp",
        "User": "0:0",
        "Hostname": "h1",
        "Domainname": "example.test",
        "Labels": {"team": "a", "Team": "b"},
        "Tty": true,
        "OpenStdin": true,
        "StdinOnce": true,
        "AttachStdin": true,
        "AttachStdout": true,
        "AttachStderr": true,
        "StopSignal": "SIGINT",
        "StopTimeout": 7,
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 2000000000i64, "Timeout": 1000000000, "Retries": 2, "StartPeriod": 1000000000},
        "Volumes": {"/data": {}},
        "HostConfig": {
            "NetworkMode": "none",
            "ReadonlyRootfs": true,
            "CapAdd": ["NET_ADMIN"],
            "CapDrop": ["CHOWN"],
            "SecurityOpt": ["no-new-privileges=true"],
            "Binds": [format!("{}:/b:ro", bind.display())],
            "Memory": 67108864,
            "CpuShares": 512,
            "PidsLimit": 100,
            "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}},
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
            "Init": true,
            "Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 448}}],
            "Tmpfs": {"/t2": "size=1m"},
            "ShmSize": 1048576,
            "Dns": ["127.0.0.53"],
            "DnsOptions": ["ndots:2"],
            "DnsSearch": ["example.test"],
            "ExtraHosts": ["db:127.0.0.2"],
            "GroupAdd": ["10"],
            "ConsoleSize": [24, 80],
        },
    });
    let base = created(
        &api,
        &send(&api, Method::POST, "/containers/create", &body).await,
    )
    .await;
    assert!(
        base.get("status").is_none(),
        "the full body is accepted: {base}"
    );
    let mut all = Vec::new();
    paths(&body, &mut Vec::new(), &mut all, false);
    assert!(all.len() > 50, "{} paths", all.len());
    let mut cases = 0;
    for path in &all {
        for (what, variant, expected) in variants(&body, path) {
            let got = created(
                &api,
                &send(&api, Method::POST, "/containers/create", &variant).await,
            )
            .await;
            let want = created(
                &api,
                &send(&api, Method::POST, "/containers/create", &expected).await,
            )
            .await;
            assert_eq!(got, want, "{what}");
            cases += 1;
        }
    }
    assert!(cases > 150, "{cases} cases");
    // The client that found this: an explicit null in RestartPolicy.
    let r = send(
        &api,
        Method::POST,
        "/containers/create",
        &json!({"Image": FIXTURE_TAG, "HostConfig": {"RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": null}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.message());
    // Wrong types are still refused, naming the field.
    let r = send(
        &api,
        Method::POST,
        "/containers/create",
        &json!({"Image": FIXTURE_TAG, "hostconfig": {"memory": "lots"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("Memory"), "{}", r.message());
}

#[tokio::test]
async fn update_and_volume_bodies_decode_as_docker_decodes_them() {
    let api = api();
    api.load_fixture().await;
    // Container update: the resulting HostConfig.
    let r = send(
        &api,
        Method::POST,
        "/containers/create",
        &json!({"Image": FIXTURE_TAG, "HostConfig": {"NetworkMode": "none"}}),
    )
    .await;
    let id = r.json()["Id"].as_str().expect("id").to_string();
    let update = json!({
        "Memory": 67108864,
        "MemorySwap": 134217728,
        "CpuShares": 256,
        "PidsLimit": 50,
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
    });
    let mut all = Vec::new();
    paths(&update, &mut Vec::new(), &mut all, false);
    for path in &all {
        for (what, variant, expected) in variants(&update, path) {
            assert_eq!(
                updated(&api, &id, variant).await,
                updated(&api, &id, expected).await,
                "update {what}"
            );
        }
    }

    // Volume create.
    let vol = json!({"Name": "v1", "Driver": "local", "Labels": {"a": "b"}, "DriverOpts": {}});
    let mut all = Vec::new();
    paths(&vol, &mut Vec::new(), &mut all, false);
    for path in &all {
        for (what, variant, expected) in variants(&vol, path) {
            assert_eq!(
                volume(&api, variant).await,
                volume(&api, expected).await,
                "volume {what}"
            );
        }
    }
}

/// The container's HostConfig after `body` is applied from a known state.
async fn updated(api: &Api, id: &str, body: Value) -> Value {
    let uri = format!("/containers/{id}/update");
    let reset = json!({"Memory": 0, "MemorySwap": 0, "CpuShares": 0, "PidsLimit": 0,
        "RestartPolicy": {"Name": "no"}});
    send(api, Method::POST, &uri, &reset).await;
    let r = send(api, Method::POST, &uri, &body).await;
    let hc = api.get(&format!("/containers/{id}/json")).await.json()["HostConfig"].clone();
    json!({"status": r.status.as_u16(), "HostConfig": hc})
}

/// The volume `body` makes (removed again), without its name, time and place.
async fn volume(api: &Api, body: Value) -> Value {
    let r = send(api, Method::POST, "/volumes/create", &body).await;
    let mut doc = r.json();
    if let Some(name) = doc["Name"].as_str().map(str::to_string) {
        api.delete(&format!("/volumes/{name}")).await;
    }
    for k in ["CreatedAt", "Mountpoint", "Name"] {
        doc[k] = Value::Null;
    }
    json!({"status": r.status.as_u16(), "doc": doc})
}
