//! Arbitrary bytes as a `docker load` archive (docker save or OCI layout, optionally
//! gzip/zstd-compressed) into a real store.
//!
//! Invariants after every input:
//! - no panic;
//! - nothing is written next to the store (a sibling sentinel dir stays empty, the scratch
//!   dir holds only `store` and `sentinel`, the store root holds only its own layout);
//! - no lease outlives the call; `content/ingest`, `snapshots/.staging` and `trash` are empty;
//! - all or nothing: a failed load published no blob, snapshot, image or tag; a successful
//!   one published every blob and snapshot its images reference;
//! - an error never says a planned layer "vanished" (an internal inconsistency);
//! - an archive that loaded loads again (now through the "layer already stored" path) to
//!   the same image IDs;
//! - after deleting every image, `Store::gc` succeeds and leaves the store empty (so every
//!   input starts from the same empty store and runs are reproducible).

#![no_main]

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::OnceLock;

use berth_fuzz::{assert_empty, assert_only, scratch_dir};
use berth_image::unpack::UnpackOptions;
use berth_image::{load_archive, LoadOptions};
use berth_store::{ExtraRoots, Store};
use libfuzzer_sys::fuzz_target;

struct Env {
    base: PathBuf,
    sentinel: PathBuf,
    store: Store,
}

static ENV: OnceLock<Env> = OnceLock::new();

const STORE_LAYOUT: &[&str] = &[
    "berth.lock",
    "layout.json",
    "meta.redb",
    "content",
    "snapshots",
    "trash",
];

fn env() -> &'static Env {
    ENV.get_or_init(|| {
        let base = scratch_dir("load_archive");
        let sentinel = base.join("sentinel");
        std::fs::create_dir(&sentinel).expect("create sentinel");
        // Opened once per process: the store holds an exclusive flock on its root.
        let store = Store::open(&base.join("store")).expect("open store");
        Env {
            base,
            sentinel,
            store,
        }
    })
}

fn options() -> LoadOptions {
    LoadOptions {
        unpack: UnpackOptions {
            min_free_bytes: 0,
            max_tar_bytes: 8 << 20,
            max_entries: 10_000,
            ..UnpackOptions::default()
        },
        ..LoadOptions::default()
    }
}

fn check_outside(env: &Env) {
    assert_empty(&env.sentinel, "sibling of the store root");
    assert_only(
        &env.base,
        &["sentinel", "store"],
        "parent of the store root",
    );
    assert_only(env.store.root(), STORE_LAYOUT, "store root");
    assert_only(
        &env.store.root().join("content"),
        &["blobs", "ingest"],
        "content dir",
    );
    let snaps = env.store.root().join("snapshots");
    for name in berth_fuzz::names(&snaps) {
        assert!(
            name == ".staging" || (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())),
            "INVARIANT: unexpected {name:?} in {}",
            snaps.display()
        );
    }
}

fn check_no_temp(env: &Env, when: &str) {
    let root = env.store.root();
    assert_empty(&root.join("content/ingest"), when);
    assert_empty(&root.join("snapshots/.staging"), when);
    assert_empty(&root.join("trash"), when);
}

fn check_empty_store(store: &Store, when: &str) {
    assert_eq!(
        store.content.list().expect("list blobs"),
        vec![],
        "INVARIANT: blobs {when}"
    );
    assert_eq!(
        store.snapshots.list().expect("list snapshots"),
        vec![],
        "INVARIANT: snapshots {when}"
    );
    assert!(
        store.meta.images().expect("images").is_empty(),
        "INVARIANT: image records {when}"
    );
    assert!(
        store.meta.tags().expect("tags").is_empty(),
        "INVARIANT: tags {when}"
    );
    assert!(
        store.meta.snapshots().expect("snapshot records").is_empty(),
        "INVARIANT: snapshot records {when}"
    );
}

/// `BERTH_FUZZ_SKIP_KNOWN=1`: do not stop on already reported bugs (see fuzz/README.md).
fn known_issues() -> bool {
    static SKIP: OnceLock<bool> = OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("BERTH_FUZZ_SKIP_KNOWN").is_some_and(|v| v == "1"))
}

fuzz_target!(|data: &[u8]| {
    let env = env();
    let store = &env.store;
    let result = load_archive(store, &mut Cursor::new(data), &options(), &mut |_| {});
    if berth_fuzz::verbose() {
        match &result {
            Ok(images) => eprintln!("load_archive: {} bytes: Ok {:?}", data.len(), images),
            Err(e) => eprintln!("load_archive: {} bytes: Err {e}", data.len()),
        }
    }

    assert_eq!(
        store.leases.count(),
        0,
        "INVARIANT: a lease outlived load_archive"
    );
    check_outside(env);
    check_no_temp(env, "after load_archive");

    match &result {
        Err(e) => {
            // "vanished": planning accepted a layer that commit then could not find.
            if !(known_issues() && e.to_string().contains("vanished")) {
                assert!(
                    !e.to_string().contains("vanished"),
                    "INVARIANT: internal inconsistency: {e}"
                );
            }
            check_empty_store(store, "after a failed load (all or nothing)")
        }
        Ok(images) => {
            assert!(!images.is_empty(), "INVARIANT: Ok with no image");
            for img in images {
                let rec = store
                    .meta
                    .image(&img.id)
                    .expect("read image record")
                    .unwrap_or_else(|| panic!("INVARIANT: loaded image {} has no record", img.id));
                let blobs = std::iter::once(&rec.config)
                    .chain(rec.manifest.iter())
                    .chain(rec.index.iter())
                    .chain(rec.extra_blobs.iter())
                    .chain(rec.layers.iter().map(|l| &l.blob));
                for b in blobs {
                    assert!(
                        store.content.exists(&b.digest),
                        "INVARIANT: image {} blob {} missing",
                        img.id,
                        b.digest
                    );
                }
                for l in &rec.layers {
                    assert!(
                        store.snapshots.exists(&l.diff_id),
                        "INVARIANT: image {} snapshot {} missing",
                        img.id,
                        l.diff_id
                    );
                }
            }
        }
    }

    // Loading the same archive again (its layers now stored: the "already present" path)
    // must give the same images.
    if let Ok(first) = &result {
        let again = load_archive(store, &mut Cursor::new(data), &options(), &mut |_| {})
            .unwrap_or_else(|e| {
                panic!("INVARIANT: an archive that loaded once must load again: {e}")
            });
        let ids = |v: &[berth_image::LoadedImage]| v.iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(
            ids(&again),
            ids(first),
            "INVARIANT: reloading gives the same images"
        );
        assert_eq!(
            store.leases.count(),
            0,
            "INVARIANT: a lease outlived the second load_archive"
        );
        check_no_temp(env, "after the second load_archive");
        check_outside(env);
    }

    // Back to an empty store so every input sees the same state.
    for rec in store.meta.images().expect("list images") {
        store.meta.delete_image(&rec.id).expect("delete image");
    }
    store
        .gc(&ExtraRoots::default())
        .expect("INVARIANT: gc must succeed");
    check_empty_store(store, "after deleting every image and gc");
    check_no_temp(env, "after gc");
    check_outside(env);
});
