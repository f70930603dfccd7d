//! Store behaviour an operator relies on: verified, durable blobs; crash leftovers
//! cleaned; GC never takes what a lease or an image holds; versions checked.

use std::io::Write;
use std::sync::Arc;

use berth_store::{BlobRef, Error, ExtraRoots, ImageRecord, LayerRecord, SnapshotRecord, Store};
use berth_types::{Digest, Reference};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

fn put(store: &Store, data: &[u8]) -> Digest {
    let lease = store.leases.acquire();
    store.content.put_durable(data, &lease).expect("put blob")
}

#[test]
fn blob_is_visible_only_after_verification() {
    let (_d, store) = open();
    let mut w = store.content.writer().expect("writer");
    w.write_all(b"hello").expect("write");
    let wrong = Digest::of(b"other");
    match w.finish(Some(&wrong)) {
        Err(Error::DigestMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, Digest::of(b"hello"));
        }
        other => panic!(
            "expected a digest mismatch, got {:?}",
            other.map(|p| p.digest())
        ),
    }
    assert!(!store.content.exists(&Digest::of(b"hello")));
    assert!(store.content.list().expect("list").is_empty());
    // Nothing left in ingest either.
    let ingest = store.root().join("content/ingest");
    assert_eq!(std::fs::read_dir(ingest).expect("ingest").count(), 0);
}

#[test]
fn concurrent_writers_of_one_blob_are_safe() {
    let (_d, store) = open();
    let store = Arc::new(store);
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let data = Arc::new(data);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let data = data.clone();
            std::thread::spawn(move || put(&store, &data))
        })
        .collect();
    let digests: Vec<Digest> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert!(digests.iter().all(|d| *d == Digest::of(&data)));
    let read = std::fs::read(store.content.path(&digests[0])).expect("read");
    assert_eq!(read.as_slice(), data.as_slice());
    assert_eq!(store.content.list().expect("list").len(), 1);
}

#[test]
fn crash_leftovers_are_removed_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        let mut w = store.content.writer().expect("writer");
        w.write_all(b"half").expect("write");
        std::mem::forget(w); // as if the process died mid-write
        let snap = store.snapshots.prepare().expect("prepare");
        std::fs::write(snap.path().join("f"), b"x").expect("write");
        std::mem::forget(snap);
    }
    let _store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        std::fs::read_dir(dir.path().join("content/ingest"))
            .expect("ingest")
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("snapshots/.staging"))
            .expect("staging")
            .count(),
        0
    );
}

#[test]
fn a_second_process_cannot_open_the_same_root() {
    let (d, _store) = open();
    match Store::open(d.path()) {
        Err(Error::Locked(_)) => {}
        other => panic!(
            "expected Locked, got {}",
            other.err().map(|e| e.to_string()).unwrap_or_default()
        ),
    }
}

#[test]
fn newer_layout_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Store::open(dir.path()).expect("open"));
    std::fs::write(dir.path().join("layout.json"), br#"{"layout_version": 99}"#).expect("write");
    let err = Store::open(dir.path()).err().expect("must refuse");
    assert!(err.to_string().contains("version 99"), "{err}");
}

fn image_with(store: &Store, layer_blob: Digest, diff_id: Digest, config: Digest) -> ImageRecord {
    let rec = ImageRecord {
        id: config,
        config: BlobRef {
            digest: config,
            media_type: "c".into(),
            size: 1,
        },
        manifest: None,
        index: None,
        layers: vec![LayerRecord {
            blob: BlobRef {
                digest: layer_blob,
                media_type: "l".into(),
                size: 1,
            },
            diff_id,
        }],
        extra_blobs: vec![],
        repo_digests: vec![],
        stored_at: String::new(),
        source: "test".into(),
        parent: None,
    };
    store
        .meta
        .put_image(&rec, &[Reference::parse("t/x:1").expect("ref")])
        .expect("put image");
    rec
}

#[test]
fn gc_keeps_referenced_and_leased_objects_and_removes_the_rest() {
    let (_d, store) = open();
    let layer = put(&store, b"layer");
    let config = put(&store, b"config");
    let orphan = put(&store, b"orphan");
    let diff_id = Digest::of(b"diff");
    let lease = store.leases.acquire();
    let snap = store.snapshots.prepare().expect("prepare");
    std::fs::write(snap.path().join("file"), b"content").expect("write");
    snap.publish(&diff_id, &lease).expect("publish");
    store
        .meta
        .put_snapshot(&SnapshotRecord {
            diff_id,
            size: 7,
            tar_size: 1024,
            entries: 1,
        })
        .expect("rec");
    drop(lease);
    image_with(&store, layer, diff_id, config);

    // An in-flight operation's blob, not yet referenced by any image.
    let inflight = store.leases.acquire();
    let mut w = store.content.writer().expect("writer");
    w.write_all(b"in flight").expect("write");
    let pending = w.finish(None).expect("finish");
    let inflight_digest = pending.publish(&inflight).expect("publish");

    let report = store.gc(&ExtraRoots::default()).expect("gc");
    assert_eq!(report.blobs_removed, vec![orphan]);
    assert!(store.content.exists(&layer) && store.content.exists(&config));
    assert!(
        store.content.exists(&inflight_digest),
        "a leased blob was collected"
    );
    assert!(store.snapshots.exists(&diff_id));

    drop(inflight);
    let report = store.gc(&ExtraRoots::default()).expect("gc");
    assert_eq!(report.blobs_removed, vec![inflight_digest]);

    // Once the image is gone, its blobs and snapshot go too.
    store.meta.delete_image(&config).expect("delete");
    let report = store.gc(&ExtraRoots::default()).expect("gc");
    assert_eq!(report.blobs_removed.len(), 2);
    assert_eq!(report.snapshots_removed, vec![diff_id]);
    assert!(store.meta.snapshot(&diff_id).expect("get").is_none());
    assert!(store.content.list().expect("list").is_empty());
    assert_eq!(
        std::fs::read_dir(store.root().join("trash"))
            .expect("trash")
            .count(),
        0
    );
}

#[test]
fn tags_move_between_images_and_deleting_an_image_removes_its_tags() {
    let (_d, store) = open();
    let a = image_with(
        &store,
        put(&store, b"l1"),
        Digest::of(b"d1"),
        put(&store, b"c1"),
    );
    let t = Reference::parse("t/x:1").expect("ref");
    assert_eq!(store.meta.resolve_tag(&t).expect("resolve"), Some(a.id));
    let b = image_with(
        &store,
        put(&store, b"l2"),
        Digest::of(b"d2"),
        put(&store, b"c2"),
    );
    assert_eq!(store.meta.resolve_tag(&t).expect("resolve"), Some(b.id));
    let removed = store.meta.delete_image(&b.id).expect("delete");
    assert_eq!(removed, vec![t.clone()]);
    assert_eq!(store.meta.resolve_tag(&t).expect("resolve"), None);
    assert!(store.meta.image(&a.id).expect("get").is_some());
}
