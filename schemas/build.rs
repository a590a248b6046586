//! Embeds the shipped Sigma rule pack (`rules/*.yml`): every file dropped there is
//! compiled into the binaries, none can be forgotten in a list.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // read at run time, not `env!` at the build script's compile time: a target cache
    // shared between clones reuses the compiled script (it once embedded an empty pack
    // from a deleted clone's path)
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("rules");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml"))
        .collect();
    assert!(!files.is_empty(), "{}: no rule files", dir.display());
    files.sort();
    let mut out = String::from("&[\n");
    for f in &files {
        let path = dir.join(f);
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            out,
            "    ({f:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    out.push(']');
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("rules.rs");
    std::fs::write(dest, out).expect("writing rules.rs");
}
