//! Arbitrary bytes as an uncompressed layer tar, unpacked into a fresh empty directory.
//!
//! Invariants after every input:
//! - no panic;
//! - nothing appears outside the destination: a sibling sentinel dir stays empty and the
//!   parent holds only `dest` and `sentinel`, and every hard-linked file in `dest` has all
//!   its links inside `dest` (no link to a host file), whether the unpack succeeded or not;
//! - on success the whole stream was consumed (`tar_bytes == input length`) and the entry
//!   limit held;
//! - the destination can be removed afterwards.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use berth_fuzz::{assert_empty, assert_links_contained, assert_only, scratch_dir};
use berth_image::unpack::{unpack_layer, UnpackOptions};
use libfuzzer_sys::fuzz_target;

static BASE: OnceLock<PathBuf> = OnceLock::new();

const MAX_ENTRIES: u64 = 10_000;

fuzz_target!(|data: &[u8]| {
    let base = BASE.get_or_init(|| {
        let base = scratch_dir("unpack_layer");
        std::fs::create_dir(base.join("sentinel")).expect("create sentinel");
        base
    });
    let dest = base.join("dest");
    let sentinel = base.join("sentinel");
    std::fs::create_dir(&dest).expect("create dest");

    let opts = UnpackOptions {
        min_free_bytes: 0,
        max_tar_bytes: 8 << 20,
        max_entries: MAX_ENTRIES,
        ..UnpackOptions::default()
    };
    let result = unpack_layer(data, &dest, &opts);
    if berth_fuzz::verbose() {
        match &result {
            Ok(stats) => eprintln!("unpack_layer: {} bytes: Ok {stats:?}", data.len()),
            Err(e) => eprintln!("unpack_layer: {} bytes: Err {e}", data.len()),
        }
    }

    assert_empty(&sentinel, "sibling of the layer root");
    assert_only(base, &["dest", "sentinel"], "parent of the layer root");
    if let Ok(stats) = &result {
        assert_eq!(
            stats.tar_bytes,
            data.len() as u64,
            "INVARIANT: a successful unpack reads the stream to its end"
        );
        assert!(stats.entries <= MAX_ENTRIES, "INVARIANT: entry limit");
    }
    assert_links_contained(&dest);
    std::fs::remove_dir_all(&dest).expect("INVARIANT: the unpacked layer can be removed");
});
