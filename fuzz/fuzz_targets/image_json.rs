//! Arbitrary bytes as the JSON documents of an image: config, manifest, index and a
//! `docker save` `manifest.json`.
//!
//! Invariants: no panic; whatever parses re-serializes, and the re-serialized form parses
//! again to an equal value (for configs: when they hold no floating-point number, since
//! serde_json without `float_roundtrip` may move a float by one ulp).

#![no_main]

use berth_image::model::{DockerSaveEntry, ImageConfig, Index, Manifest};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = ImageConfig::parse(data) {
        let bytes = serde_json::to_vec(&cfg).expect("INVARIANT: a parsed config serializes");
        let again = ImageConfig::parse(&bytes).unwrap_or_else(|e| {
            panic!(
                "INVARIANT: re-serialized config must parse: {e}\n{}",
                String::from_utf8_lossy(&bytes)
            )
        });
        let as_value = serde_json::to_value(&cfg).expect("config to value");
        if !has_float(&as_value) {
            assert_eq!(
                again,
                cfg,
                "INVARIANT: config round trip\n{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
    if let Ok(m) = Manifest::parse(data) {
        let bytes = serde_json::to_vec(&m).expect("INVARIANT: a parsed manifest serializes");
        let again = Manifest::parse(&bytes).expect("INVARIANT: re-serialized manifest must parse");
        assert_eq!(again, m, "INVARIANT: manifest round trip");
    }
    if let Ok(i) = Index::parse(data) {
        let bytes = serde_json::to_vec(&i).expect("INVARIANT: a parsed index serializes");
        let again = Index::parse(&bytes).expect("INVARIANT: re-serialized index must parse");
        assert_eq!(again, i, "INVARIANT: index round trip");
    }
    if let Ok(entries) = serde_json::from_slice::<Vec<DockerSaveEntry>>(data) {
        let bytes = serde_json::to_vec(&entries).expect("INVARIANT: manifest.json serializes");
        let again: Vec<DockerSaveEntry> = serde_json::from_slice(&bytes)
            .expect("INVARIANT: re-serialized manifest.json must parse");
        assert_eq!(again, entries, "INVARIANT: manifest.json round trip");
    }
});
