//! Shared helpers for the sandbox's integration tests: start a sandbox, point kubectl or a
//! kube-rs client at it, wait for conditions.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tidescale_sandbox::{Credentials, Sandbox, SandboxConfig, SandboxHandle};

/// A started sandbox plus a temp dir holding its admin kubeconfig and kubectl's cache.
pub struct Env {
    pub sandbox: SandboxHandle,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn start() -> Env {
    start_with(SandboxConfig::default()).await
}

pub async fn start_with(config: SandboxConfig) -> Env {
    install_crypto();
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    sandbox
        .write_kubeconfig(
            &kubeconfig,
            &Credentials::Token(sandbox.admin_token().to_owned()),
        )
        .expect("kubeconfig");
    Env {
        sandbox,
        dir,
        kubeconfig,
    }
}

impl Env {
    /// Runs kubectl with the admin kubeconfig and a private cache dir (60 s budget).
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(&self.kubeconfig, args, None).await
    }

    /// Runs kubectl with a given kubeconfig, optionally feeding stdin.
    pub async fn kubectl_with(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Output {
        use tokio::io::AsyncWriteExt;
        let cache = self.dir.path().join("cache");
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn().expect("kubectl on PATH");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.expect("write stdin");
        }
        drop(input);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl finished in time")
            .expect("kubectl ran")
    }

    /// kubectl that must succeed; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl apply -f - with a manifest.
    pub async fn apply(&self, manifest: &str, extra: &[&str]) -> String {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        let out = self
            .kubectl_with(&self.kubeconfig, &args, Some(manifest))
            .await;
        assert!(
            out.status.success(),
            "apply failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kube-rs client with the admin kubeconfig.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.sandbox.admin_kubeconfig()).await
    }
}

pub async fn client_from(kubeconfig_yaml: &str) -> kube::Client {
    install_crypto();
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(kubeconfig_yaml).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    kube::Client::try_from(config).expect("client")
}

/// Polls `check` every 50 ms for up to 10 s.
pub async fn eventually<F: FnMut() -> bool>(mut check: F) -> bool {
    for _ in 0..200 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub const WIDGET_CRD: &str = include_str!("../fixtures/widgets-crd.yaml");
