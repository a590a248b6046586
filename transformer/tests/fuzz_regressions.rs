//! Replays every checked-in fuzz regression input (`fuzz/regressions/<target>/`) through
//! the same entry point the fuzz target uses, on stable Rust: an input that once
//! crashed (or that reproduces a reported attack) must never crash again.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        eprintln!("{target}: {}", path.display());
        run(&data);
        n += 1;
    }
    assert!(n > 0, "no regression inputs for {target}");
}

#[test]
fn sigma() {
    replay("sigma", transformer::fuzz::sigma);
}

#[test]
fn decode() {
    replay("decode", transformer::fuzz::decode);
}

#[test]
fn audit() {
    replay("audit", transformer::fuzz::audit);
}

#[test]
fn cloudtrail() {
    replay("cloudtrail", transformer::fuzz::cloudtrail);
}

#[test]
fn awsauth() {
    replay("awsauth", transformer::fuzz::awsauth);
}

#[test]
fn part_file() {
    replay("part_file", transformer::fuzz::part_file);
}

#[test]
fn handler() {
    replay("handler", transformer::fuzz::handler);
}
