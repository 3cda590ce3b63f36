//! The README's benchmark tables are the last benchmark run's, word for word: `cargo xtask
//! bench` writes `bench/results/latest.md` and the same text into README.md between two
//! markers; this fails when either was edited by hand or is from another run. No root needed.

use std::{fs, path::Path};

const BEGIN: &str = "<!-- bench/results/latest.md: written by `cargo xtask bench`; do not edit -->";
const END: &str = "<!-- end of bench/results/latest.md -->";

#[test]
fn the_readme_shows_the_last_benchmark_run_word_for_word() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let latest = fs::read_to_string(root.join("bench/results/latest.md")).unwrap();
    let (a, b) = (
        readme.find(BEGIN).expect("README.md has the start marker"),
        readme.find(END).expect("README.md has the end marker"),
    );
    let embedded = &readme[a + BEGIN.len() + 1..b];
    assert_eq!(
        embedded, latest,
        "README.md's benchmark tables differ from bench/results/latest.md: run `cargo xtask bench`"
    );
    // And latest.md is the report of latest.json's run, whose parts are all from that run.
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("bench/results/latest.json")).unwrap())
            .unwrap();
    let run = json["run"].as_str().expect("latest.json names its run");
    assert!(latest.starts_with(&format!("Run {run}:")), "{latest}");
    for bench in ["xdp", "udp", "sweep", "echo", "tcp", "proxy"] {
        if !json[bench].is_null() {
            assert_eq!(
                json[bench]["provenance"]["run"], run,
                "{bench} is from another run"
            );
        }
    }
}
