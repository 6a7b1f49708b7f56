//! The living sample: `examples/database-operator`, a crate outside the
//! workspace that depends on kopf and kopf-harness as a user's crate does,
//! must build and pass its own tests (create, readiness, scaling and
//! deletion on a CRD with a status subresource).

use std::{path::Path, process::Command};

/// Runs the sample crate's test suite with the cargo that runs this one.
#[test]
fn the_sample_operator_crate_should_pass_its_own_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = root.join("examples/database-operator/Cargo.toml");
    // A target directory of its own: the outer cargo may hold the lock of
    // the workspace's while its tests run.
    let target = root.join("target/sample-crate");
    let output = Command::new(env!("CARGO"))
        .args(["test", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        // The sample's snapshots are reviewed ones: never rewrite them here.
        .env("INSTA_UPDATE", "no")
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the sample crate's tests failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("test result: ok. 4 passed"),
        "all four scenarios ran:\n{stdout}"
    );
}
