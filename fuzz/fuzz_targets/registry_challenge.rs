//! Arbitrary UTF-8 as a registry's `WWW-Authenticate` header (it comes from the network).
//!
//! Invariants: no panic; a Bearer challenge the parser accepts has a realm, and a
//! challenge rebuilt from what it parsed (quoted, escaped) parses back to the same.

#![no_main]

use berth_image::registry::{parse_challenge, Challenge};
use libfuzzer_sys::fuzz_target;

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Some(c) = parse_challenge(s) else {
        return;
    };
    if let Challenge::Bearer {
        realm,
        service,
        scope,
    } = &c
    {
        let mut rebuilt = format!("Bearer realm={}", quote(realm));
        if let Some(sv) = service {
            rebuilt.push_str(&format!(",service={}", quote(sv)));
        }
        if let Some(sc) = scope {
            rebuilt.push_str(&format!(",scope={}", quote(sc)));
        }
        assert_eq!(
            parse_challenge(&rebuilt).as_ref(),
            Some(&c),
            "INVARIANT: a rebuilt challenge parses back the same: {rebuilt}"
        );
    }
});
