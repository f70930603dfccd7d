//! Arbitrary UTF-8 lines as `import --change` instructions, applied in order to one config.
//!
//! Invariants: no panic; the resulting config serializes and parses back.

#![no_main]

use berth_image::changes::apply_change;
use berth_image::model::RunConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut cfg = RunConfig::default();
    for line in s.lines() {
        let _ = apply_change(&mut cfg, line);
    }
    let bytes = serde_json::to_vec(&cfg).expect("INVARIANT: the changed config serializes");
    let again: RunConfig =
        serde_json::from_slice(&bytes).expect("INVARIANT: the changed config parses back");
    assert_eq!(again, cfg, "INVARIANT: changed config round trip");
});
