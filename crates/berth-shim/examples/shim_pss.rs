//! Memory of idle shims: starts N `sleep` containers from the fixture image and prints the
//! proportional set size (Pss, /proc/PID/smaps_rollup) of their shims.
//!
//! ```text
//! cargo build --release -p berth-shim --bins --examples
//! sudo BERTH_SHIM=target/release/berth-shim target/release/examples/shim_pss [N=50]
//! ```

use std::path::Path;

use berth_engine::{ContainerState, CreateOptions, DaemonConfig, Engine};
use berth_runtime::shim_protocol::ShimState;
use berth_runtime::ContainerOptions;

fn pss_kb(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50);
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/app-docker-save.tar"
    );
    let t = tempfile::tempdir()?;
    let root = t.path().join("root");
    let e = Engine::open(DaemonConfig {
        // No networking here: leave the host's alone.
        bridge: "none".into(),
        root: root.clone(),
        min_free_bytes: Some(0),
        ..Default::default()
    })?;
    e.load(&mut std::fs::File::open(fixture)?, &mut |_| {})?;
    let opts = CreateOptions {
        runtime: ContainerOptions {
            args_override: Some(vec!["sleep 1000".into()]),
            ..ContainerOptions::default()
        },
        ..CreateOptions::default()
    };
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = e.create_container("fixture/app:1", &opts)?.id;
        e.start_container(&id)?;
        ids.push(id);
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (mut pss, mut rss) = (0, 0);
    for id in &ids {
        let st: ShimState = serde_json::from_slice(&std::fs::read(
            Path::new(&root).join(format!("containers/{id}/shim.state.json")),
        )?)?;
        assert!(matches!(
            e.container_state(id)?,
            ContainerState::Running { .. }
        ));
        pss += pss_kb(st.shim_pid, "Pss:");
        rss += pss_kb(st.shim_pid, "Rss:");
    }
    println!(
        "{n} idle shims: Pss {pss} kB total, {} kB per shim; Rss {} kB per shim",
        pss / n as u64,
        rss / n as u64
    );
    for id in &ids {
        e.remove_container(id, true)?;
    }
    Ok(())
}
