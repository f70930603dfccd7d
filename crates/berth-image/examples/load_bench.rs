//! Loads an archive into a fresh store and prints the time, for profiling the load path
//! without the daemon: `cargo run --release --example load_bench -- ARCHIVE STATE_DIR`.
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (archive, state) = match args.as_slice() {
        [_, a, s] => (a.clone(), s.clone()),
        _ => return Err("usage: load_bench ARCHIVE STATE_DIR".into()),
    };
    tracing_subscriber_init();
    let store = berth_store::Store::open(std::path::Path::new(&state))?;
    let mut f = std::fs::File::open(&archive)?;
    let t = Instant::now();
    let loaded = berth_image::load_archive(
        &store,
        &mut f,
        &berth_image::LoadOptions::default(),
        &mut |_| {},
    )?;
    println!(
        "loaded {:?} in {:.2}s",
        loaded.iter().map(|l| l.id.to_string()).collect::<Vec<_>>(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn tracing_subscriber_init() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
}
