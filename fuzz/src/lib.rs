//! Helpers shared by the berth fuzz targets: per-process scratch directories and the
//! filesystem invariants checked after every input.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// A fresh directory for this fuzzing process: `$BERTH_FUZZ_TMP` (or the system temp dir)
/// `/berth-fuzz-NAME-PID`. Created once per process; never removed by the target (libFuzzer
/// exits with `exit()`), so `run.sh` points `BERTH_FUZZ_TMP` at a directory it removes.
pub fn scratch_dir(name: &str) -> PathBuf {
    let parent = std::env::var_os("BERTH_FUZZ_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    fs::create_dir_all(&parent).expect("create BERTH_FUZZ_TMP");
    let dir = parent.join(format!("berth-fuzz-{name}-{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("remove stale scratch dir");
    }
    fs::create_dir(&dir).expect("create scratch dir");
    dir.canonicalize().expect("canonicalize scratch dir")
}

/// The names in `dir`, sorted (lossy UTF-8).
pub fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| {
            e.expect("read_dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Panics unless `dir` exists and is empty.
#[track_caller]
pub fn assert_empty(dir: &Path, why: &str) {
    let n = names(dir);
    assert!(
        n.is_empty(),
        "INVARIANT: {} must be empty ({why}), holds {n:?}",
        dir.display()
    );
}

/// Panics unless `dir` holds exactly `expected` (and nothing else).
#[track_caller]
pub fn assert_only(dir: &Path, expected: &[&str], why: &str) {
    let n = names(dir);
    let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    assert!(
        n == want,
        "INVARIANT: {} must hold exactly {want:?} ({why}), holds {n:?}",
        dir.display()
    );
}

/// Panics unless `dir` holds nothing outside `allowed` (some may be missing).
#[track_caller]
pub fn assert_subset(dir: &Path, allowed: &[&str], why: &str) {
    let n = names(dir);
    let extra: Vec<&String> = n
        .iter()
        .filter(|x| !allowed.contains(&x.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "INVARIANT: {} holds unexpected {extra:?} ({why}); allowed {allowed:?}",
        dir.display()
    );
}

/// `BERTH_FUZZ_VERBOSE=1`: targets print what each input did (for checking seeds).
pub fn verbose() -> bool {
    static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V.get_or_init(|| std::env::var_os("BERTH_FUZZ_VERBOSE").is_some_and(|v| v == "1"))
}

/// Panics if a non-directory under `root` has a hard link outside `root`: for every inode
/// found (without following symlinks), the links seen inside must account for its whole
/// link count. This catches a hard link made to a host file.
#[track_caller]
pub fn assert_links_contained(root: &Path) {
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;
    let mut seen: HashMap<(u64, u64), (u64, u64, PathBuf)> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => panic!("read_dir {}: {e}", dir.display()),
        };
        for entry in rd {
            let entry = entry.expect("read_dir entry");
            let path = entry.path();
            let md = fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
            if md.is_dir() {
                stack.push(path);
            } else if md.nlink() > 1 {
                let e = seen
                    .entry((md.dev(), md.ino()))
                    .or_insert((0, md.nlink(), path));
                e.0 += 1;
            }
        }
    }
    for (count, nlink, path) in seen.values() {
        assert!(
            count == nlink,
            "INVARIANT: {} has {nlink} hard links but only {count} are inside {}",
            path.display(),
            root.display()
        );
    }
}
