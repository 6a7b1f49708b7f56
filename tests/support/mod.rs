//! Shared by the tests that run the `fake-apiserver` binary.
#![allow(dead_code)] // reason: each test crate uses a part of it.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

/// The `fake-apiserver` binary `cargo test --workspace` built beside the
/// test executables (or `$FAKE_APISERVER_BIN`).
pub(crate) fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("FAKE_APISERVER_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(format!("fake-apiserver{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (which builds it) or set FAKE_APISERVER_BIN",
        bin.display()
    );
    bin
}

/// The binary, serving on a free loopback port, with its kubeconfig.
pub(crate) struct Standalone {
    child: Child,
    /// Holds the kubeconfig (and kubectl's cache).
    pub(crate) dir: tempfile::TempDir,
    /// The server's URL.
    pub(crate) url: String,
}

impl Standalone {
    /// Starts the binary with `extra` arguments; returns once it listens.
    pub(crate) fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let mut child = Command::new(binary())
            .args(["--port", "0", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the fake-apiserver binary starts");
        // It prints its URL once it listens.
        let mut line = String::new();
        let out = child.stdout.take().expect("piped stdout");
        BufReader::new(out).read_line(&mut line).unwrap();
        assert!(
            line.starts_with("http://127.0.0.1:") || line.starts_with("https://127.0.0.1:"),
            "unexpected first line: {line:?}"
        );
        Standalone {
            child,
            dir,
            url: line.trim().to_string(),
        }
    }

    /// The kubeconfig's path.
    pub(crate) fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A kubectl command for this cluster (its kubeconfig, its own cache).
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args);
        cmd
    }

    /// Runs kubectl with this cluster's kubeconfig: exit success, stdout, stderr.
    pub(crate) fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args).output().expect("kubectl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Standalone {
    /// Kills the server at once (SIGKILL on Unix): no shutdown, no flush.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
