//! Running an operator binary as a process against the standalone-style fake
//! server on loopback, the way Kopf's runner runs `kopf run`: the binary gets
//! `--kubeconfig` (plus the arguments given), its stdout and stderr are
//! captured, and it is stopped with SIGTERM (then killed after a timeout).
//!
//! Real time and real sockets: use a multi-threaded runtime without a
//! paused clock for these tests.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use fake_apiserver::Serving;

use crate::{cluster::Cluster, error::HarnessError};

/// An operator process against a served fake cluster.
pub struct ProcessRunner {
    cluster: Cluster,
    serving: Option<Serving>,
    kubeconfig: Option<tempfile::NamedTempFile>,
    child: Option<Child>,
    output: Arc<Mutex<Vec<u8>>>,
    status: Option<ExitStatus>,
}

fn capture(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    });
}

impl ProcessRunner {
    /// Serves `cluster` on a free loopback port and starts `binary` with
    /// `--kubeconfig <file>` followed by `args`.
    ///
    /// # Errors
    /// When the server cannot listen or the binary cannot start.
    pub async fn start(
        cluster: Cluster,
        binary: &Path,
        args: &[&str],
    ) -> Result<Self, HarnessError> {
        let serving = cluster
            .fake("serving the cluster to a binary")?
            .serve("127.0.0.1:0".parse().expect("a literal address"))
            .await
            .map_err(|e| HarnessError::Stopped(format!("cannot serve: {e}")))?;
        let kubeconfig = serving
            .temp_kubeconfig()
            .map_err(|e| HarnessError::Stopped(format!("cannot write the kubeconfig: {e}")))?;
        let mut child = Command::new(binary)
            .arg("--kubeconfig")
            .arg(kubeconfig.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                HarnessError::Stopped(format!("cannot start {}: {e}", binary.display()))
            })?;
        let output = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            capture(out, output.clone());
        }
        if let Some(err) = child.stderr.take() {
            capture(err, output.clone());
        }
        Ok(ProcessRunner {
            cluster,
            serving: Some(serving),
            kubeconfig: Some(kubeconfig),
            child: Some(child),
            output,
            status: None,
        })
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Waits (real time) until the output contains `text`.
    ///
    /// # Errors
    /// A timeout, with the output so far.
    pub async fn wait_for_output(&self, text: &str, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = std::time::Instant::now() + timeout;
        while !self.output().contains(text) {
            if std::time::Instant::now() >= deadline {
                return Err(HarnessError::Stopped(format!(
                    "{text:?} not seen within {timeout:?}; output:\n{}",
                    self.output()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops the process with SIGTERM (killing it after `timeout`) and
    /// returns its exit status.
    ///
    /// # Errors
    /// When it had to be killed.
    pub async fn stop(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let Some(mut child) = self.child.take() else {
            return Err(HarnessError::Stopped("not running".into()));
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.status = Some(status);
                self.serving.take();
                return Ok(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::Stopped(format!(
                    "did not stop within {timeout:?}; killed"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The kubeconfig the process was given.
    pub fn kubeconfig(&self) -> Option<PathBuf> {
        self.kubeconfig.as_ref().map(|k| k.path().to_path_buf())
    }
}

impl Drop for ProcessRunner {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
