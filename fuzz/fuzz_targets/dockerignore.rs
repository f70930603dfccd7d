//! Arbitrary text as a `.dockerignore` (the build context's), then arbitrary paths
//! matched against it.
//!
//! Invariants: no panic; the context's root is never excluded; matching is a pure
//! function (the same answer twice).

#![no_main]

use berth_build::ignore::Matcher;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (patterns, paths) = text.split_once('\0').unwrap_or((text, "a/b\nx.tmp\n.git/HEAD"));
    let Ok(m) = Matcher::parse(patterns) else {
        return;
    };
    assert!(!m.excluded(""), "INVARIANT: the root is never excluded");
    for p in paths.lines() {
        let first = m.excluded(p);
        assert_eq!(first, m.excluded(p), "INVARIANT: matching is pure");
        let _ = m.may_descend(p);
    }
});
