//! Arbitrary bytes as the tar of a `docker cp` into a container (`PUT
//! /containers/{id}/archive`), extracted into `root/dest` where `root` stands for the
//! container's rootfs and holds the symlinks a hostile image ships (`escape -> /`,
//! `up -> ../../..`).
//!
//! Invariants after every input:
//! - no panic;
//! - nothing appears outside the root: a sibling sentinel dir stays empty and the parent
//!   holds only `root` and `sentinel`; every hard-linked file in `root` has all its links
//!   inside `root`, whether the extraction succeeded or not;
//! - the root can be removed afterwards.

#![no_main]

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::OnceLock;

use berth_fuzz::{assert_empty, assert_links_contained, assert_only, scratch_dir};
use berth_image::cp::{extract_archive, CtrPath, ExtractOptions};
use libfuzzer_sys::fuzz_target;

static BASE: OnceLock<PathBuf> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let base = BASE.get_or_init(|| {
        let base = scratch_dir("cp_extract");
        std::fs::create_dir(base.join("sentinel")).expect("create sentinel");
        base
    });
    let root = base.join("root");
    let sentinel = base.join("sentinel");
    std::fs::create_dir_all(root.join("dest")).expect("create root/dest");
    std::os::unix::fs::symlink("/", root.join("escape")).expect("symlink");
    std::os::unix::fs::symlink("../../..", root.join("up")).expect("symlink");
    let fd = std::fs::File::open(&root).expect("open root");
    let dest = CtrPath::parse("/dest").expect("path");
    let opts = ExtractOptions {
        min_free_bytes: 0,
        ..ExtractOptions::default()
    };
    let result = extract_archive(fd.as_fd(), &dest, data, &opts);
    if berth_fuzz::verbose() {
        match &result {
            Ok(stats) => eprintln!("cp_extract: {} bytes: Ok {stats:?}", data.len()),
            Err(e) => eprintln!("cp_extract: {} bytes: Err {e}", data.len()),
        }
    }
    assert_empty(&sentinel, "sibling of the container root");
    assert_only(base, &["root", "sentinel"], "parent of the container root");
    assert_links_contained(&root);
    drop(fd);
    std::fs::remove_dir_all(&root).expect("INVARIANT: the container root can be removed");
});
