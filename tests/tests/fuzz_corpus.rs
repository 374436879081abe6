//! Replays every saved fuzz input (`fuzz/corpus/<target>/` and the crashes
//! kept in `fuzz/artifacts/<target>/`) through the fuzz target bodies, on
//! stable Rust and without libFuzzer, so what fuzzing found stays fixed.

use std::path::{Path, PathBuf};

use xunjian_tests::fuzz_bodies::{TARGETS, body, generated_seeds};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Regular files directly in `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs one input, naming it if the body panics.
fn replay(target: &str, name: &str, data: &[u8]) {
    let run = body(target).unwrap_or_else(|| panic!("no fuzz body called {target}"));
    let outcome = std::panic::catch_unwind(|| run(data));
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        panic!("fuzz target {target} fails on {name}: {message}");
    }
}

#[test]
fn every_fuzz_target_has_a_body_and_every_body_a_target() {
    let mut files: Vec<String> = inputs(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    files.sort();
    let mut bodies: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    bodies.sort();
    assert_eq!(files, bodies);
}

#[test]
fn saved_corpus_and_crash_inputs_still_pass() {
    let mut replayed = 0;
    for (target, _) in TARGETS {
        for kind in ["corpus", "artifacts"] {
            for file in inputs(&fuzz_dir().join(kind).join(target)) {
                let data = std::fs::read(&file).expect("read a fuzz input");
                replay(target, &file.display().to_string(), &data);
                replayed += 1;
            }
        }
    }
    assert!(
        replayed > 0,
        "no fuzz corpus found under {}",
        fuzz_dir().display()
    );
}

/// The generated seeds run through their bodies too; with
/// `XUNJIAN_FUZZ_SEED_DIR=<dir>` they are also written to `<dir>/<target>/`
/// (how `fuzz/corpus/` got them).
#[test]
fn generated_seeds_pass() {
    let out = std::env::var_os("XUNJIAN_FUZZ_SEED_DIR").map(PathBuf::from);
    for (target, name, data) in generated_seeds() {
        replay(target, &name, &data);
        if let Some(out) = &out {
            let dir = out.join(target);
            std::fs::create_dir_all(&dir).expect("create the seed directory");
            std::fs::write(dir.join(&name), &data).expect("write a seed");
        }
    }
}
