//! Arbitrary UTF-8 as an image reference.
//!
//! Invariants when `Reference::parse` accepts the input:
//! - the normalized form (`to_string`) parses to an equal reference;
//! - the familiar form (`familiar`) parses to an equal reference too (it is what `berth
//!   images` shows and what users paste back);
//! - `familiar_tagged` / `repository` forms parse; `parse_with_default_tag` agrees with
//!   `parse` on domain and path.

#![no_main]

use berth_types::Reference;
use libfuzzer_sys::fuzz_target;

/// With `BERTH_FUZZ_SKIP_KNOWN=1`, inputs hitting an already reported bug are skipped so a
/// run can look for others. Each entry names its reproducer under `fuzz/regressions/`.
fn known_issue(r: &Reference) -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*SKIP.get_or_init(|| std::env::var_os("BERTH_FUZZ_SKIP_KNOWN").is_some_and(|v| v == "1")) {
        return false;
    }
    // regressions/reference/familiar-drops-library-prefix: `familiar()` strips `library/`
    // from docker.io/library/x/o, giving `x/o`, which is docker.io/x/o.
    let multi_library = r
        .path()
        .strip_prefix("library/")
        .is_some_and(|p| p.contains('/'));
    // regressions/reference/familiar-path-looks-like-domain (and ...-path-is-localhost):
    // docker.io/b.8/t shows as `b.8/t`, which is repository `t` on registry `b.8`;
    // regressions/reference/familiar-does-not-parse: docker.io/a_b.c/d shows as `a_b.c/d`,
    // which does not parse at all (`a_b.c` is taken for a registry host).
    let first = r.path().split('/').next().unwrap_or("");
    let domain_like = first.contains('.') || first == "localhost";
    r.domain() == "docker.io" && (multi_library || domain_like)
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let dt = Reference::parse_with_default_tag(s);
    let Ok(r) = Reference::parse(s) else {
        assert!(
            dt.is_err(),
            "parse_with_default_tag accepted {s:?} that parse refused"
        );
        return;
    };
    let dt = dt.expect("parse_with_default_tag must accept what parse accepts");
    assert_eq!((dt.domain(), dt.path()), (r.domain(), r.path()));

    let full = r.to_string();
    let r2 = Reference::parse(&full)
        .unwrap_or_else(|e| panic!("INVARIANT: normalized form {full:?} of {s:?} must parse: {e}"));
    assert_eq!(r2, r, "INVARIANT: {s:?} -> normalized {full:?} -> {r2}");

    if !known_issue(&r) {
        let fam = r.familiar();
        let r3 = Reference::parse(&fam).unwrap_or_else(|e| {
            panic!("INVARIANT: familiar form {fam:?} of {s:?} must parse: {e}")
        });
        assert_eq!(
            r3, r,
            "INVARIANT: {s:?} -> familiar {fam:?} -> {r3} (a different repository)"
        );
        if let Some(ft) = r.familiar_tagged() {
            let r4 = Reference::parse(&ft)
                .unwrap_or_else(|e| panic!("INVARIANT: familiar_tagged {ft:?} must parse: {e}"));
            assert_eq!(
                (r4.domain(), r4.path(), r4.tag()),
                (r.domain(), r.path(), r.tag())
            );
        }
    }

    let repo = r.repository();
    Reference::parse(&repo)
        .unwrap_or_else(|e| panic!("INVARIANT: repository {repo:?} must parse: {e}"));
});
