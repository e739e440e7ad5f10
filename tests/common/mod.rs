//! Shared helpers of the integration tests: locating the binary, the repository and the
//! external tools the test script installs. A missing tool fails the test, naming what to
//! install; nothing is skipped.

#![allow(dead_code)] // Each test binary uses a different subset.

pub mod cluster;
pub mod dev;
pub mod proxy;
pub mod rabbitmq;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `tidescale` binary built for this test run.
pub fn tidescale() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tidescale"))
}

/// Run `tidescale` with `args`, feeding `stdin`.
pub fn run_tidescale(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = tidescale()
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tidescale");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for tidescale")
}

/// An external tool: the path in `env_var` (set by `scripts/test`), else `name` on PATH.
/// Panics with install instructions when neither exists.
pub fn tool(env_var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "{env_var}={} does not exist; run the tests with scripts/test",
            path.display()
        );
        return path;
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| {
        panic!("{name} is required by this test but was not found: set {env_var} or run the tests with scripts/test, which installs it")
    })
}

/// Every file under `dir` with extension `ext`, sorted.
pub fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}
