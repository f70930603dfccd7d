//! Loading archives into a real store: the fixtures written by Docker and skopeo keep
//! their IDs; hostile or broken archives are refused with an error naming the image,
//! layer and entry, leave nothing listed, and leave no stray blob after the next GC.

use std::io::{Cursor, Write};

use berth_image::{load_archive, save_archive, LoadOptions, SaveFormat, SaveItem};
use berth_store::{ExtraRoots, Store};
use berth_types::{Digest, Reference};
use serde_json::json;

/// The fixtures written by Docker and skopeo, copied into the repository unchanged.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");
const FIXTURE_ID: &str = "sha256:60531c6e24d2ccf57ee55d41b3db84e938c346a60152ca51b33b63721094a617";
const FIXTURE_OCI_CONFIG: &str =
    "sha256:bea0fb7fae117d4b868a4b2bfa59bc4215c726ef84db4c62c9f7b2bb68a75623";
const FIXTURE_OCI_MANIFEST: &str =
    "sha256:efd776a2a1bad35f585006a0cda0ac43449721e940da80d839807b7c303f3131";

fn fixture(name: &str) -> std::path::PathBuf {
    let dir = std::env::var("BERTH_FIXTURES").unwrap_or_else(|_| FIXTURES.to_string());
    std::path::Path::new(&dir).join(name)
}

fn opts() -> LoadOptions {
    let mut o = LoadOptions::default();
    o.unpack.min_free_bytes = 0;
    o
}

fn new_store() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&d.path().join("root")).expect("open store");
    (d, s)
}

fn load(
    store: &Store,
    bytes: &[u8],
) -> Result<Vec<berth_image::LoadedImage>, berth_image::ImageError> {
    load_archive(store, &mut Cursor::new(bytes), &opts(), &mut |_| {})
}

/// Asserts the store holds no image, and no blob or snapshot once GC ran.
fn assert_clean_after_gc(store: &Store) {
    assert!(
        store.meta.images().expect("images").is_empty(),
        "an image is listed after a failed load"
    );
    store.gc(&ExtraRoots::default()).expect("gc");
    assert!(
        store.content.list().expect("blobs").is_empty(),
        "stray blobs after gc"
    );
    assert!(
        store.snapshots.list().expect("snaps").is_empty(),
        "stray snapshots after gc"
    );
    let staging = store.root().join("snapshots/.staging");
    assert_eq!(
        std::fs::read_dir(staging).expect("staging").count(),
        0,
        "staging not cleaned"
    );
    let ingest = store.root().join("content/ingest");
    assert_eq!(
        std::fs::read_dir(ingest).expect("ingest").count(),
        0,
        "ingest not cleaned"
    );
}

// ---- archive builders -------------------------------------------------------------

/// A raw tar header with any name (even hostile ones the tar crate refuses).
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: u8, data: &[u8], link: &str, mode: u32) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |buf: &mut [u8], v: u64| {
        let s = format!("{:0width$o}\0", v, width = buf.len() - 1);
        buf.copy_from_slice(s.as_bytes());
    };
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], data.len() as u64);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn finish_tar(mut t: Vec<u8>) -> Vec<u8> {
    t.extend(std::iter::repeat_n(0u8, 1024));
    t
}

/// A layer tar from (name, kind, data, link) entries.
fn layer(entries: &[(&str, u8, &[u8], &str)]) -> Vec<u8> {
    let mut t = Vec::new();
    for (name, kind, data, link) in entries {
        let mode = if *kind == b'5' { 0o755 } else { 0o644 };
        raw_entry(&mut t, name, *kind, data, link, mode);
    }
    finish_tar(t)
}

/// A `docker save` archive of one image with these layer tars and tag.
fn docker_archive(
    layers: &[Vec<u8>],
    tag: &str,
    diff_ids: Option<Vec<Digest>>,
) -> (Vec<u8>, Digest) {
    let diff_ids = diff_ids.unwrap_or_else(|| layers.iter().map(|l| Digest::of(l)).collect());
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| json!({"created": "2026-01-01T00:00:00Z"})).collect::<Vec<_>>(),
    }))
    .expect("config");
    let id = Digest::of(&config);
    let mut outer = Vec::new();
    let mut paths = Vec::new();
    for l in layers {
        let p = format!("{}/layer.tar", Digest::of(l).hex());
        raw_entry(&mut outer, &p, b'0', l, "", 0o644);
        paths.push(p);
    }
    raw_entry(
        &mut outer,
        &format!("{}.json", id.hex()),
        b'0',
        &config,
        "",
        0o644,
    );
    let manifest = serde_json::to_vec(
        &json!([{"Config": format!("{}.json", id.hex()), "RepoTags": [tag], "Layers": paths}]),
    )
    .expect("manifest");
    raw_entry(&mut outer, "manifest.json", b'0', &manifest, "", 0o644);
    (finish_tar(outer), id)
}

fn base_layer() -> Vec<u8> {
    layer(&[
        ("bin/", b'5', b"", ""),
        ("bin/hello", b'0', b"#!/bin/sh\necho hi\n", ""),
        ("etc/", b'5', b"", ""),
    ])
}

// ---- fixtures written by Docker and skopeo ------------------------------------------

#[test]
fn docker_fixture_loads_with_dockers_image_id_and_round_trips() {
    let (_d, store) = new_store();
    let bytes = std::fs::read(fixture("app-docker-save.tar")).expect("fixture");
    let loaded = load(&store, &bytes).expect("load docker fixture");
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id.to_string(), FIXTURE_ID);
    assert_eq!(
        loaded[0].tags,
        vec![Reference::parse("fixture/app:1").expect("ref")]
    );
    let rec = store
        .meta
        .image(&loaded[0].id)
        .expect("get")
        .expect("stored");
    assert_eq!(rec.layers.len(), 3);
    for l in &rec.layers {
        assert!(
            store.snapshots.exists(&l.diff_id),
            "layer {} not unpacked",
            l.diff_id
        );
    }
    let hello = store
        .snapshots
        .path(&rec.layers[2].diff_id)
        .join("srv/app/hello.txt");
    assert_eq!(
        std::fs::read_to_string(hello).expect("hello.txt").trim(),
        "hello from a layer"
    );

    // Save in both formats and load each into a fresh store: same image ID.
    for format in [SaveFormat::Docker, SaveFormat::Oci] {
        let mut out = Vec::new();
        let item = SaveItem {
            image: rec.clone(),
            tags: loaded[0].tags.clone(),
        };
        save_archive(&store, &[item], format, &mut out).expect("save");
        let (_d2, store2) = new_store();
        let again = load(&store2, &out).expect("reload saved archive");
        assert_eq!(
            again[0].id.to_string(),
            FIXTURE_ID,
            "{format:?} round trip changed the ID"
        );
        assert_eq!(again[0].tags, loaded[0].tags);
    }
    // Loading twice is idempotent.
    load(&store, &bytes).expect("second load");
    assert_eq!(store.meta.images().expect("images").len(), 1);
}

#[test]
fn oci_fixture_loads_with_skopeos_digests() {
    let (_d, store) = new_store();
    let bytes = std::fs::read(fixture("app-oci-archive.tar")).expect("fixture");
    let loaded = load(&store, &bytes).expect("load oci fixture");
    assert_eq!(loaded[0].id.to_string(), FIXTURE_OCI_CONFIG);
    assert_eq!(
        loaded[0].tags,
        vec![Reference::parse("fixture/app:1").expect("ref")]
    );
    let rec = store
        .meta
        .image(&loaded[0].id)
        .expect("get")
        .expect("stored");
    assert_eq!(
        rec.manifest
            .as_ref()
            .map(|m| m.digest.to_string())
            .as_deref(),
        Some(FIXTURE_OCI_MANIFEST)
    );
    // gzip layers: the blob digest differs from the diff_id, and both were checked.
    assert!(rec.layers.iter().all(|l| l.blob.digest != l.diff_id));
    let mut out = Vec::new();
    save_archive(
        &store,
        &[SaveItem {
            image: rec,
            tags: loaded[0].tags.clone(),
        }],
        SaveFormat::Oci,
        &mut out,
    )
    .expect("save");
    let (_d2, store2) = new_store();
    let again = load(&store2, &out).expect("reload");
    let rec2 = store2
        .meta
        .image(&again[0].id)
        .expect("get")
        .expect("stored");
    assert_eq!(
        rec2.manifest.map(|m| m.digest.to_string()).as_deref(),
        Some(FIXTURE_OCI_MANIFEST)
    );
}

#[test]
fn images_sharing_a_layer_share_one_snapshot() {
    let (_d, store) = new_store();
    let base = base_layer();
    let top = layer(&[("app", b'0', b"x", "")]);
    let (a, _) = docker_archive(std::slice::from_ref(&base), "t/a:1", None);
    let (b, _) = docker_archive(&[base.clone(), top], "t/b:1", None);
    load(&store, &a).expect("a");
    load(&store, &b).expect("b");
    assert_eq!(store.snapshots.list().expect("list").len(), 2);
    assert_eq!(store.meta.images().expect("images").len(), 2);
}

#[test]
fn gzip_and_zstd_layers_in_a_docker_archive_load() {
    let (_d, store) = new_store();
    let base = base_layer();
    let diff = Digest::of(&base);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&base).expect("gz");
    let gz = gz.finish().expect("gz");
    let (arch, id) = docker_archive(&[gz], "t/gz:1", Some(vec![diff]));
    assert_eq!(load(&store, &arch).expect("gzip layer")[0].id, id);
    let zst = zstd::encode_all(base.as_slice(), 3).expect("zstd");
    let (arch, id) = docker_archive(&[zst], "t/zst:1", Some(vec![diff]));
    assert_eq!(load(&store, &arch).expect("zstd layer")[0].id, id);
}

// ---- hostile and broken archives ---------------------------------------------------

fn assert_refused(bytes: &[u8], must_contain: &[&str]) {
    let (_d, store) = new_store();
    let err = load(&store, bytes).expect_err("load must fail");
    let msg = err.to_string();
    for s in must_contain {
        assert!(msg.contains(s), "error {msg:?} does not mention {s:?}");
    }
    assert_clean_after_gc(&store);
}

#[test]
fn diff_id_mismatch_is_refused_naming_image_and_layer() {
    let base = base_layer();
    let (arch, _) = docker_archive(
        &[base],
        "evil/x:1",
        Some(vec![Digest::of(b"something else")]),
    );
    assert_refused(&arch, &["evil/x:1", "layer 1", "diff_id"]);
}

#[test]
fn path_traversal_in_a_layer_is_refused_naming_the_entry() {
    let (_d, store) = new_store();
    let evil = layer(&[("../../../../tmp/berth-escape", b'0', b"pwned", "")]);
    let (arch, _) = docker_archive(&[base_layer(), evil], "evil/x:1", None);
    let err = load(&store, &arch).expect_err("refused").to_string();
    assert!(
        err.contains("evil/x:1") && err.contains("layer 2") && err.contains("berth-escape"),
        "{err}"
    );
    assert!(!std::path::Path::new("/tmp/berth-escape").exists());
    assert_clean_after_gc(&store);
}

#[test]
fn symlink_then_write_through_it_is_refused() {
    let evil = layer(&[
        ("etc", b'2', b"", "/etc"),
        ("etc/berth-evil", b'0', b"x", ""),
    ]);
    let (arch, _) = docker_archive(&[evil], "evil/x:1", None);
    assert_refused(&arch, &["evil/x:1", "layer 1", "etc/berth-evil"]);
    assert!(!std::path::Path::new("/etc/berth-evil").exists());
}

#[test]
fn hard_link_outside_the_layer_is_refused() {
    let evil = layer(&[("passwd", b'1', b"", "../../../../etc/passwd")]);
    let (arch, _) = docker_archive(&[evil], "evil/x:1", None);
    assert_refused(&arch, &["evil/x:1", "passwd"]);
}

#[test]
fn layer_bigger_than_the_limit_is_refused_as_a_bomb() {
    let (_d, store) = new_store();
    let big = vec![0u8; 4 << 20];
    let bomb = layer(&[("zeros", b'0', &big, "")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bomb).expect("gz");
    let gz = gz.finish().expect("gz");
    let (arch, _) = docker_archive(&[gz], "evil/bomb:1", Some(vec![Digest::of(&bomb)]));
    let mut o = opts();
    o.unpack.max_tar_bytes = 1 << 20;
    let err = load_archive(&store, &mut Cursor::new(arch), &o, &mut |_| {})
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("evil/bomb:1") && err.contains("exceeds"),
        "{err}"
    );
    assert_clean_after_gc(&store);
}

#[test]
fn missing_layer_and_missing_config_are_refused() {
    let (arch, _) = docker_archive(&[base_layer()], "t/x:1", None);
    // Drop the layer member: rebuild an archive with only config + manifest.
    let mut t = tar::Archive::new(Cursor::new(arch));
    let mut out = Vec::new();
    for e in t.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e.path().expect("path").to_string_lossy().into_owned();
        if name.ends_with("layer.tar") {
            continue;
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).expect("read");
        raw_entry(&mut out, &name, b'0', &data, "", 0o644);
    }
    assert_refused(
        &finish_tar(out),
        &["t/x:1", "layer 1", "not in the archive"],
    );
}

#[test]
fn truncated_and_garbage_archives_are_refused_without_leftovers() {
    let bytes = std::fs::read(fixture("app-docker-save.tar")).expect("fixture");
    assert_refused(&bytes[..bytes.len() / 2], &[]);
    assert_refused(b"this is not an archive at all, just text", &[]);
    assert_refused(&[], &["neither manifest.json"]);
}

#[test]
fn oci_blob_whose_content_does_not_match_its_name_is_refused() {
    let bytes = std::fs::read(fixture("app-oci-archive.tar")).expect("fixture");
    // Rewrite the archive with one byte of the config blob changed.
    let mut t = tar::Archive::new(Cursor::new(bytes));
    let mut out = Vec::new();
    for e in t.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let kind = e.header().entry_type().as_byte();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).expect("read");
        if name.ends_with(&FIXTURE_OCI_CONFIG[7..]) {
            let i = data
                .iter()
                .position(|b| *b == b'G')
                .expect("a G in the config");
            data[i] = b'H';
        }
        raw_entry(&mut out, &name, kind, &data, "", 0o644);
    }
    assert_refused(&finish_tar(out), &["config", "content digest"]);
}

#[test]
fn invalid_repo_tag_is_refused() {
    let (arch, _) = docker_archive(&[base_layer()], "UPPER/Case:1", None);
    assert_refused(&arch, &["UPPER/Case:1"]);
}

/// An OCI layout whose index.json names an image index of two platforms.
fn multi_platform_archive() -> (Vec<u8>, Digest, Digest) {
    let mut blobs: Vec<(Digest, Vec<u8>)> = Vec::new();
    let mut manifest_for = |arch: &str, content: &[u8]| -> (Digest, usize, Digest) {
        let l = layer(&[("arch.txt", b'0', content, "")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&l).expect("gz");
        let gz = gz.finish().expect("gz");
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&l)]},
        }))
        .expect("config");
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": Digest::of(&gz), "size": gz.len()}],
        }))
        .expect("manifest");
        let (cd, md) = (Digest::of(&config), Digest::of(&m));
        let mlen = m.len();
        blobs.push((Digest::of(&gz), gz));
        blobs.push((cd, config));
        blobs.push((md, m));
        (md, mlen, cd)
    };
    let (arm, arm_len, _) = manifest_for("arm64", b"arm");
    let (amd, amd_len, amd_config) = manifest_for("amd64", b"amd");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm, "size": arm_len,
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd, "size": amd_len,
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    }))
    .expect("index");
    let index_digest = Digest::of(&index);
    let top = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest,
                       "size": index.len(), "annotations": {"io.containerd.image.name": "docker.io/multi/arch:1"}}],
    }))
    .expect("index.json");
    blobs.push((index_digest, index));
    let mut out = Vec::new();
    raw_entry(
        &mut out,
        "oci-layout",
        b'0',
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        "",
        0o644,
    );
    for (d, b) in &blobs {
        raw_entry(
            &mut out,
            &format!("blobs/sha256/{}", d.hex()),
            b'0',
            b,
            "",
            0o644,
        );
    }
    raw_entry(&mut out, "index.json", b'0', &top, "", 0o644);
    (finish_tar(out), index_digest, amd_config)
}

#[test]
fn index_picks_the_host_platform_and_keeps_the_index_for_save() {
    let (_d, store) = new_store();
    let (arch, index_digest, amd_config) = multi_platform_archive();
    let loaded = load(&store, &arch).expect("load multi-platform archive");
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded[0].id, amd_config,
        "the linux/amd64 manifest must be chosen"
    );
    let rec = store
        .meta
        .image(&loaded[0].id)
        .expect("get")
        .expect("stored");
    assert_eq!(rec.index.as_ref().map(|i| i.digest), Some(index_digest));
    let snap = store
        .snapshots
        .path(&rec.layers[0].diff_id)
        .join("arch.txt");
    assert_eq!(std::fs::read(snap).expect("arch.txt"), b"amd");
    // OCI save writes the whole index (both platforms) back, byte for byte.
    let mut out = Vec::new();
    let item = SaveItem {
        image: rec,
        tags: loaded[0].tags.clone(),
    };
    save_archive(&store, &[item], SaveFormat::Oci, &mut out).expect("save");
    let mut names = Vec::new();
    let mut top_index = Vec::new();
    for e in tar::Archive::new(Cursor::new(out))
        .entries()
        .expect("entries")
    {
        let mut e = e.expect("entry");
        let name = e.path().expect("path").to_string_lossy().into_owned();
        if name == "index.json" {
            std::io::Read::read_to_end(&mut e, &mut top_index).expect("read");
        }
        names.push(name);
    }
    assert!(names.contains(&format!("blobs/sha256/{}", index_digest.hex())));
    assert_eq!(
        names
            .iter()
            .filter(|n| n.len() > "blobs/sha256/".len() && n.starts_with("blobs/sha256/"))
            .count(),
        7,
        "{names:?}"
    );
    let top: serde_json::Value = serde_json::from_slice(&top_index).expect("index.json");
    assert_eq!(top["manifests"][0]["digest"], index_digest.to_string());
}

#[test]
fn an_image_may_use_the_same_layer_twice() {
    // Two RUN steps that change nothing give two identical (empty) layers.
    let (_d, store) = new_store();
    let empty = finish_tar(Vec::new());
    let (arch, id) = docker_archive(
        &[empty.clone(), base_layer(), empty.clone()],
        "t/twice:1",
        None,
    );
    assert_eq!(load(&store, &arch).expect("repeated layer")[0].id, id);
    let rec = store.meta.image(&id).expect("get").expect("stored");
    assert_eq!(rec.layers.len(), 3);
    assert_eq!(rec.layers[0].blob.digest, rec.layers[2].blob.digest);
    // Saved and reloaded: still three layers, same ID.
    let mut out = Vec::new();
    save_archive(
        &store,
        &[SaveItem {
            image: rec,
            tags: vec![],
        }],
        SaveFormat::Docker,
        &mut out,
    )
    .expect("save");
    let (_d2, store2) = new_store();
    assert_eq!(load(&store2, &out).expect("reload")[0].id, id);
}

#[test]
fn empty_numeric_header_fields_read_as_zero_like_docker() {
    // Some tar writers leave uid/gid/mtime empty; Go's archive/tar (Docker) reads 0.
    let mut t = Vec::new();
    raw_entry(&mut t, "file", b'0', b"x", "", 0o644);
    for field in [108..116, 116..124, 136..148] {
        t[field].iter_mut().for_each(|b| *b = 0);
    }
    t[148..156].copy_from_slice(b"        ");
    let sum: u32 = t[..512].iter().map(|b| u32::from(*b)).sum();
    t[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let l = finish_tar(t);
    let (_d, store) = new_store();
    let (arch, id) = docker_archive(std::slice::from_ref(&l), "t/empty-fields:1", None);
    assert_eq!(load(&store, &arch).expect("empty numeric fields")[0].id, id);
    let f = store.snapshots.path(&Digest::of(&l)).join("file");
    let meta = std::fs::symlink_metadata(f).expect("file unpacked");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
}

#[test]
fn docker_25_save_layout_with_schema2_manifest_loads_and_keeps_its_manifest() {
    // Docker 25+ writes an OCI layout whose index names a Docker schema2 manifest, plus
    // the legacy manifest.json pointing into blobs/sha256/.
    let l = base_layer();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&l)]},
    }))
    .expect("config");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": Digest::of(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar", "digest": Digest::of(&l), "size": l.len()}],
    }))
    .expect("manifest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "digest": Digest::of(&manifest), "size": manifest.len(),
                       "annotations": {"io.containerd.image.name": "docker.io/library/new:25",
                                       "org.opencontainers.image.ref.name": "25"}}],
    }))
    .expect("index");
    let legacy = serde_json::to_vec(&json!([{
        "Config": format!("blobs/sha256/{}", Digest::of(&config).hex()),
        "RepoTags": ["new:25"],
        "Layers": [format!("blobs/sha256/{}", Digest::of(&l).hex())],
    }]))
    .expect("manifest.json");
    let mut out = Vec::new();
    for (name, data) in [
        (format!("blobs/sha256/{}", Digest::of(&l).hex()), l.clone()),
        (
            format!("blobs/sha256/{}", Digest::of(&config).hex()),
            config.clone(),
        ),
        (
            format!("blobs/sha256/{}", Digest::of(&manifest).hex()),
            manifest.clone(),
        ),
        ("index.json".to_string(), index),
        ("manifest.json".to_string(), legacy),
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
    ] {
        raw_entry(&mut out, &name, b'0', &data, "", 0o644);
    }
    let (_d, store) = new_store();
    let loaded = load(&store, &finish_tar(out)).expect("docker 25 layout");
    assert_eq!(loaded[0].id, Digest::of(&config));
    assert_eq!(
        loaded[0].tags,
        vec![Reference::parse("new:25").expect("ref")]
    );
    let rec = store
        .meta
        .image(&loaded[0].id)
        .expect("get")
        .expect("stored");
    assert_eq!(
        rec.manifest.as_ref().map(|m| m.digest),
        Some(Digest::of(&manifest))
    );
    assert_eq!(
        rec.layers[0].blob.media_type,
        "application/vnd.docker.image.rootfs.diff.tar"
    );
}

#[test]
fn concurrent_loads_of_the_same_archive_both_succeed_and_share_everything() {
    let (_d, store) = new_store();
    let bytes = std::fs::read(fixture("app-docker-save.tar")).expect("fixture");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| load(&store, &bytes))).collect();
        for h in handles {
            let loaded = h.join().expect("thread").expect("concurrent load");
            assert_eq!(loaded[0].id.to_string(), FIXTURE_ID);
        }
    });
    assert_eq!(store.meta.images().expect("images").len(), 1);
    assert_eq!(store.snapshots.list().expect("snapshots").len(), 3);
    // config + 3 layers, once each
    assert_eq!(store.content.list().expect("blobs").len(), 4);
    assert_eq!(
        std::fs::read_dir(store.root().join("snapshots/.staging"))
            .expect("staging")
            .count(),
        0
    );
}
