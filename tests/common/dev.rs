//! `tidescale dev` as a child process and the real kubectl against it, for tests that drive
//! the sandbox the way a user does.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `tidescale dev` running in the background; killed on drop.
pub struct Dev {
    pub child: Child,
    pub kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_dev() -> Dev {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = super::tidescale()
        .args(["dev", "--port", "0", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tidescale dev");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("ready:") => break,
            Ok(_) => continue,
            Err(e) => panic!("tidescale dev printed no ready line within 30 s: {e}"),
        }
    }
    Dev {
        child,
        kubeconfig,
        _dir: dir,
    }
}

/// Run kubectl with `kubeconfig`; a failure fails the test with kubectl's output.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    let output = Command::new(super::tool("KUBECTL", "kubectl"))
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        output.status.success(),
        "kubectl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
