//! Writes every target's seeds to `corpus/TARGET/seed-NAME`:
//! `cargo run --manifest-path peering-userspace/fuzz/Cargo.toml --example seeds`.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, bytes) in peering_fuzz::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
    }
    println!("seeds written under {}", root.display());
    Ok(())
}
