//! Delivery files checked by the means available without a Docker engine, a Kubernetes cluster
//! or a cloud account (issue #7, `design.md` §7):
//!
//! - the image: both Dockerfiles parsed (stages, pinned bases, `--locked`, numeric non-root
//!   USER, exec-form ENTRYPOINT, no RUN in the shell-less runtime stage), `.dockerignore`
//!   keeping every workspace member; and the `tidescale` binary the image builds (this test
//!   run's build of the same package) answers `--version`, serves `/healthz` and `/readyz` as
//!   `tidescale operator` against the sandbox, writes nothing to its working directory and
//!   exits 0 on SIGTERM;
//! - Terraform: `terraform fmt -check` (`validate` needs the azurerm provider from a registry
//!   these machines cannot reach, so CI runs it; here the required pieces are asserted in the
//!   text instead), and every variable and output documented in the folder's README;
//! - the pipelines: both files parse and have their test, build/push and deploy jobs/stages;
//!   every GitHub action is pinned to a release;
//! - kind: `cluster.yaml` parses and carries the registry patch; `bash -n` and `shellcheck` on
//!   the scripts, whose referenced files exist;
//! - the sample workloads: `tidescale check` accepts them, `kubernetes-validate --strict`
//!   accepts their built-in objects, and each ScaledObject targets its Deployment, which runs a
//!   binary the workers crate builds.
//!
//! Missing tools (terraform, shellcheck, kubernetes-validate) fail the test, naming them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml_ng::Value;

fn read(path: &str) -> String {
    let full = common::repo().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn yaml(path: &str) -> Value {
    let mut docs = yaml_docs(&common::repo().join(path));
    assert_eq!(docs.len(), 1, "{path}: expected one YAML document");
    docs.remove(0)
}

fn run_ok(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The image
// ---------------------------------------------------------------------------------------------

/// One Dockerfile instruction: keyword (upper case) and its arguments, continuations joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let (keyword, args) = pending.split_once(' ').unwrap_or((pending.as_str(), ""));
        out.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
        pending.clear();
    }
    assert!(pending.is_empty(), "Dockerfile ends inside a continuation");
    out
}

/// Stages of a Dockerfile: (base image, stage name, instructions of the stage).
type Stage = (String, String, Vec<(String, String)>);

fn stages(path: &str) -> (Vec<(String, String)>, Vec<Stage>) {
    let mut args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for (keyword, rest) in instructions(&read(path)) {
        if keyword == "FROM" {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            assert!(
                parts.len() == 3 && parts[1].eq_ignore_ascii_case("AS"),
                "{path}: every stage is named (FROM image AS name): {rest}"
            );
            stages.push((parts[0].to_owned(), parts[2].to_owned(), Vec::new()));
        } else if let Some(stage) = stages.last_mut() {
            stage.2.push((keyword, rest));
        } else {
            args.push((keyword, rest));
        }
    }
    (args, stages)
}

/// The rules both images follow; returns the builder's RUN lines joined.
fn check_dockerfile(path: &str, package: &str, entrypoint: &str) -> String {
    let toolchain = read("rust-toolchain.toml");
    let channel = regex::Regex::new(r#"channel\s*=\s*"([^"]+)""#)
        .unwrap()
        .captures(&toolchain)
        .expect("rust-toolchain.toml has a channel")[1]
        .to_owned();
    let (global, stages) = stages(path);
    assert!(
        global.contains(&("ARG".to_owned(), format!("RUST_VERSION={channel}"))),
        "{path}: ARG RUST_VERSION must default to rust-toolchain.toml's {channel}: {global:?}"
    );
    let names: Vec<&str> = stages.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(names, ["builder", "runtime"], "{path}: stages");
    let (builder_base, _, builder) = &stages[0];
    let (runtime_base, _, runtime) = &stages[1];
    assert_eq!(
        builder_base, "docker.io/library/rust:${RUST_VERSION}-bookworm",
        "{path}: builder base"
    );
    assert!(
        runtime_base.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "{path}: runtime base {runtime_base}"
    );
    for base in [builder_base, runtime_base] {
        let tag = base.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains('/'),
            "{path}: base image {base} must carry a tag other than latest"
        );
    }
    let run = builder
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, r)| r.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let build = format!("cargo build --release --locked -p {package}");
    assert!(run.contains(&build), "{path}: builder must run `{build}`");
    assert!(
        run.contains("--mount=type=cache,target=/usr/local/cargo/registry")
            && run.contains("--mount=type=cache,target=/src/target"),
        "{path}: cargo registry and target/ are cache mounts"
    );
    let env = builder
        .iter()
        .filter(|(k, _)| k == "ENV")
        .map(|(_, r)| r.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    for setting in [
        "RUSTUP_TOOLCHAIN=${RUST_VERSION}",
        "LIBZ_SYS_STATIC=1",
        "LIBCURL_NO_PKG_CONFIG=1",
    ] {
        assert!(env.contains(setting), "{path}: builder ENV lacks {setting}");
    }
    // The runtime has no shell: nothing may RUN there, and the entrypoint is exec form.
    assert!(
        runtime.iter().all(|(k, _)| k != "RUN"),
        "{path}: the runtime stage has no shell, so no RUN"
    );
    assert!(
        runtime
            .iter()
            .any(|(k, r)| k == "COPY" && r.starts_with("--from=builder ")),
        "{path}: the runtime copies the build output from the builder"
    );
    let users: Vec<&str> = runtime
        .iter()
        .filter(|(k, _)| k == "USER")
        .map(|(_, r)| r.as_str())
        .collect();
    assert_eq!(users, ["65532:65532"], "{path}: numeric non-root USER");
    let entry = runtime
        .iter()
        .find(|(k, _)| k == "ENTRYPOINT")
        .map(|(_, r)| r.as_str())
        .unwrap_or_else(|| panic!("{path}: no ENTRYPOINT"));
    let entry: Vec<String> = serde_json::from_str(entry)
        .unwrap_or_else(|e| panic!("{path}: ENTRYPOINT must be exec form (JSON array): {e}"));
    assert_eq!(entry, [entrypoint], "{path}: ENTRYPOINT");
    run
}

#[test]
fn dockerfile_builds_the_locked_release_binary_into_a_nonroot_shell_less_image() {
    let run = check_dockerfile("Dockerfile", "tidescale", "/tidescale");
    assert!(
        run.contains("/out/tidescale --version"),
        "the builder smoke-tests the binary it built"
    );
    let text = read("Dockerfile");
    assert!(
        text.contains("same `tidescale` binary"),
        "Dockerfile says it builds the binary the tests run"
    );
    for assumption in ["BuildKit", "readOnlyRootFilesystem", "libssl3"] {
        assert!(
            text.contains(assumption),
            "Dockerfile documents {assumption}"
        );
    }
}

#[test]
fn workers_dockerfile_builds_every_sample_binary() {
    let run = check_dockerfile(
        "manifests/examples/workers/Dockerfile",
        "tidescale-sample-workers",
        "/usr/local/bin/rabbitmq-worker",
    );
    for bin in worker_binaries() {
        assert!(
            run.contains(&bin),
            "workers Dockerfile does not install {bin}"
        );
    }
}

#[test]
fn dockerignore_drops_local_state_but_keeps_every_workspace_member() {
    let patterns: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    for needed in ["target", ".git", "**/.terraform", "*.tfstate"] {
        assert!(
            patterns.iter().any(|p| p == needed),
            ".dockerignore lacks {needed}"
        );
    }
    let manifest: toml_members::Members = toml_members::parse(&read("Cargo.toml"));
    for member in manifest.0.iter().chain(["benches".to_owned()].iter()) {
        for pattern in &patterns {
            assert!(
                !(member == pattern || member.starts_with(&format!("{pattern}/"))),
                ".dockerignore pattern {pattern} drops {member}, which the build needs"
            );
        }
    }
}

/// The `[workspace] members` list of the root Cargo.toml (no toml crate in the workspace).
mod toml_members {
    pub struct Members(pub Vec<String>);

    pub fn parse(text: &str) -> Members {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("members"))
            .expect("Cargo.toml has [workspace] members");
        let list = line.split_once('=').expect("members = [...]").1;
        Members(
            list.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .map(|m| m.trim().trim_matches('"').to_owned())
                .filter(|m| !m.is_empty() && m != ".")
                .collect(),
        )
    }
}

#[test]
fn the_image_binary_answers_version() {
    let output = run_ok(common::tidescale().arg("--version"), "tidescale --version");
    assert_eq!(
        output.trim(),
        format!("tidescale {}", env!("CARGO_PKG_VERSION"))
    );
}

/// A child process killed on drop (unless it already exited).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a child's pipe, read on a thread.
fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line from `rx` for which `pick` returns `Some`, within `within`.
fn wait_line<T>(
    rx: &mpsc::Receiver<String>,
    within: Duration,
    what: &str,
    mut pick: impl FnMut(&str) -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(found) = pick(&line) {
                    return found;
                }
                seen.push(line);
            }
            Err(e) => panic!(
                "no {what} within {within:?} ({e}); output:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// `GET path` over plain HTTP/1.1; the status code.
fn http_status(addr: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: not an HTTP response: {response:?}"))
}

#[test]
fn the_image_binary_runs_the_operator_with_probes_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut dev = common::tidescale()
        .args(["dev", "--no-operator", "--port", "0", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tidescale dev");
    let dev_out = lines(dev.stdout.take().expect("stdout"));
    let _dev = Running(dev);
    wait_line(
        &dev_out,
        Duration::from_secs(30),
        "`ready:` from tidescale dev",
        |l| l.starts_with("ready:").then_some(()),
    );

    // The operator as the chart runs it, from an empty working directory (the image's root
    // filesystem is read-only: nothing may be written there).
    let workdir = tempfile::tempdir().unwrap();
    let mut operator = common::tidescale()
        .args([
            "operator",
            "--metrics-bind-address",
            "127.0.0.1:0",
            "--health-probe-bind-address",
            "127.0.0.1:0",
            "--adapter-bind-address",
            "127.0.0.1:0",
            "--pod-namespace",
            "default",
            "--log-format",
            "json",
            // kube's controller says when its cache synced (see the SIGTERM step below).
            "--log-level",
            "info,kube_runtime::controller=debug",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", workdir.path())
        .env_remove("RUST_LOG")
        .current_dir(workdir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tidescale operator");
    let logs = lines(operator.stderr.take().expect("stderr"));
    let pid = operator.id();
    let mut operator = Running(operator);
    let (probes, metrics) = wait_line(
        &logs,
        Duration::from_secs(30),
        "`serving telemetry` log line",
        |l| {
            let line: serde_json::Value = serde_json::from_str(l).ok()?;
            (line["message"] == "serving telemetry").then(|| {
                (
                    line["probes"].as_str().expect("probes address").to_owned(),
                    line["metrics"]
                        .as_str()
                        .expect("metrics address")
                        .to_owned(),
                )
            })
        },
    );
    assert_eq!(http_status(&probes, "/healthz"), 200);
    // Ready once the ScaledObject cache synced and the (empty) first round of polls is done:
    // the chart's readiness probe and `helm --wait` depend on it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_status(&probes, "/readyz") != 200 {
        assert!(
            Instant::now() < deadline,
            "/readyz not 200 within 20 s; the operator's log:\n{}",
            logs.try_iter().collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(http_status(&metrics, "/metrics"), 200);

    // SIGTERM (what the kubelet sends) ends it cleanly, sent once the controller runs.
    wait_line(
        &logs,
        Duration::from_secs(30),
        "kube's `store is ready, starting runner` line",
        |l| {
            l.contains(r#""message":"store is ready, starting runner""#)
                .then_some(())
        },
    );
    run_ok(
        Command::new("kill").args(["-TERM", &pid.to_string()]),
        "kill -TERM",
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = operator.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "operator still running 15 s after SIGTERM; its log:\n{}",
            logs.try_iter().collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "operator exited with {status} after SIGTERM"
    );
    let written: Vec<PathBuf> = std::fs::read_dir(workdir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(written.is_empty(), "the operator wrote files: {written:?}");
}

// ---------------------------------------------------------------------------------------------
// Terraform
// ---------------------------------------------------------------------------------------------

const AKS: &str = "manifests/provision/aks";

fn terraform_text() -> String {
    let mut text = String::new();
    for file in common::files(&common::repo().join(AKS), "tf") {
        text.push_str(&std::fs::read_to_string(file).unwrap());
        text.push('\n');
    }
    text
}

#[test]
fn terraform_is_formatted() {
    // `terraform validate` is deliberately not run: it needs `terraform init` to download the
    // azurerm provider from registry.terraform.io, which these machines cannot reach. CI runs
    // fmt + init + validate (ci.yml job `terraform`, azure-pipelines.yml job terraform_check);
    // the next test asserts the resources and settings the issue asks for instead.
    let terraform = common::tool("TERRAFORM", "terraform");
    run_ok(
        Command::new(terraform)
            .args(["fmt", "-check", "-recursive", "-diff"])
            .arg(common::repo().join(AKS)),
        "terraform fmt -check -recursive manifests/provision/aks",
    );
}

#[test]
fn terraform_creates_aks_with_registry_pull_and_workload_identity() {
    let text = terraform_text();
    for needed in [
        r#"source  = "hashicorp/azurerm""#,
        r#"version = "~> 4."#,
        r#"resource "azurerm_resource_group""#,
        r#"resource "azurerm_container_registry""#,
        r#"resource "azurerm_kubernetes_cluster""#,
        "oidc_issuer_enabled       = true",
        "workload_identity_enabled = true",
        r#"role_definition_name             = "AcrPull""#,
        "kubelet_identity[0].object_id",
        r#"resource "azurerm_user_assigned_identity""#,
        r#"resource "azurerm_federated_identity_credential""#,
        "system:serviceaccount:${var.tidescale_namespace}:${var.tidescale_service_account}",
        r#"resource "azurerm_servicebus_namespace""#,
        r#"resource "azurerm_servicebus_queue""#,
        "count               = var.create_servicebus ? 1 : 0",
    ] {
        assert!(text.contains(needed), "Terraform lacks `{needed}`");
    }
    let variables = read(&format!("{AKS}/variables.tf"));
    assert!(variables.contains(r#"default     = "keda""#));
    assert!(variables.contains(r#"default     = "tidescale-operator""#));
}

#[test]
fn terraform_variables_and_outputs_are_described_and_documented() {
    let readme = read(&format!("{AKS}/README.md"));
    for (file, kind) in [("variables.tf", "variable"), ("outputs.tf", "output")] {
        let text = read(&format!("{AKS}/{file}"));
        let block = regex::Regex::new(&format!(r#"(?m)^{kind} "(\w+)" \{{"#)).unwrap();
        let names: Vec<String> = block
            .captures_iter(&text)
            .map(|c| c[1].to_owned())
            .collect();
        assert!(!names.is_empty(), "{file} declares no {kind}");
        let described = text.matches("  description = ").count();
        assert_eq!(
            described,
            names.len(),
            "every {kind} in {file} has a description"
        );
        for name in &names {
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "{AKS}/README.md does not document {kind} {name}"
            );
        }
    }
    for output in [
        "cluster_name",
        "kubeconfig_command",
        "acr_login_server",
        "tidescale_identity_client_id",
        "servicebus_namespace",
    ] {
        assert!(read(&format!("{AKS}/outputs.tf")).contains(&format!("output \"{output}\"")));
    }
}

// ---------------------------------------------------------------------------------------------
// Pipelines
// ---------------------------------------------------------------------------------------------

fn string_values(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|v| string_values(v, out)),
        Value::Mapping(map) => map.iter().for_each(|(k, v)| {
            string_values(k, out);
            string_values(v, out);
        }),
        _ => {}
    }
}

fn all_text(value: &Value) -> String {
    let mut out = Vec::new();
    string_values(value, &mut out);
    out.join("\n")
}

#[test]
fn github_workflow_tests_builds_pushes_and_deploys() {
    let workflow = yaml(".github/workflows/ci.yml");
    let jobs = workflow["jobs"].as_mapping().expect("jobs");
    let names: Vec<&str> = jobs.keys().filter_map(Value::as_str).collect();
    for job in [
        "test",
        "terraform",
        "build-push",
        "deploy",
        "terraform-apply",
    ] {
        assert!(names.contains(&job), "ci.yml has no job {job}: {names:?}");
    }
    assert!(all_text(&workflow["jobs"]["test"]).contains("bash .ci/run"));
    let build = all_text(&workflow["jobs"]["build-push"]);
    assert!(build.contains("docker/build-push-action@"));
    assert!(build.contains("manifests/examples/workers/Dockerfile"));
    assert_eq!(workflow["jobs"]["build-push"]["needs"][0], "test");
    let deploy = &workflow["jobs"]["deploy"];
    assert_eq!(deploy["needs"][0], "build-push");
    assert_eq!(deploy["environment"], "production");
    assert!(
        deploy["if"]
            .as_str()
            .unwrap_or_default()
            .contains("refs/tags/v")
    );
    let deploy = all_text(deploy);
    assert!(deploy.contains("helm upgrade --install tidescale manifests/chart/tidescale"));
    assert!(deploy.contains("--namespace keda"));
    let apply = &workflow["jobs"]["terraform-apply"];
    assert!(
        apply["if"]
            .as_str()
            .unwrap_or_default()
            .contains("inputs.apply_terraform")
    );
    assert!(
        workflow["on"]["workflow_dispatch"]["inputs"]["apply_terraform"].is_mapping(),
        "workflow_dispatch input apply_terraform"
    );
    // Every action is pinned to a release (or a commit).
    let pinned = regex::Regex::new(r"^[\w.-]+/[\w./-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$").unwrap();
    let text = read(".github/workflows/ci.yml");
    let uses: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix("uses: "))
        .collect();
    assert!(uses.len() >= 8, "uses: {uses:?}");
    for action in uses {
        assert!(
            pinned.is_match(action),
            "action not pinned to a release: {action}"
        );
    }
}

#[test]
fn azure_pipeline_tests_builds_pushes_and_deploys() {
    let pipeline = yaml("azure-pipelines.yml");
    let stages = pipeline["stages"].as_sequence().expect("stages");
    let mut names = Vec::new();
    let mut conditional = Vec::new();
    for stage in stages {
        if let Some(name) = stage["stage"].as_str() {
            names.push(name.to_owned());
        } else if let Some(map) = stage.as_mapping() {
            // `${{ if ... }}:` template blocks holding more stages.
            for (key, inner) in map {
                for stage in inner.as_sequence().into_iter().flatten() {
                    let name = stage["stage"].as_str().unwrap_or_default().to_owned();
                    conditional.push((key.as_str().unwrap_or_default().to_owned(), name));
                }
            }
        }
    }
    assert_eq!(names, ["Test", "BuildPush", "Deploy"]);
    assert_eq!(
        conditional,
        [(
            "${{ if eq(parameters.applyTerraform, true) }}".to_owned(),
            "Terraform".to_owned()
        )]
    );
    assert_eq!(pipeline["parameters"][0]["name"], "applyTerraform");
    assert_eq!(pipeline["parameters"][0]["type"], "boolean");
    assert_eq!(pipeline["parameters"][0]["default"], false);
    assert!(all_text(&stages[0]).contains("bash .ci/run"));
    let build = all_text(&stages[1]);
    assert!(build.contains("Docker@2") && build.contains("buildAndPush"));
    let deploy = all_text(&stages[2]);
    assert!(deploy.contains("helm upgrade --install tidescale manifests/chart/tidescale"));
    assert!(deploy.contains("production"));
}

// ---------------------------------------------------------------------------------------------
// kind
// ---------------------------------------------------------------------------------------------

const KIND: &str = "manifests/provision/kind";

#[test]
fn kind_cluster_config_patches_containerd_for_the_local_registry() {
    let config = yaml(&format!("{KIND}/cluster.yaml"));
    assert_eq!(config["kind"], "Cluster");
    assert_eq!(config["apiVersion"], "kind.x-k8s.io/v1alpha4");
    let patches = all_text(&config["containerdConfigPatches"]);
    assert!(
        patches.contains(r#"config_path = "/etc/containerd/certs.d""#),
        "containerd must read per-registry host files: {patches}"
    );
    let nodes = config["nodes"].as_sequence().expect("nodes");
    assert!(nodes.iter().any(|n| n["role"] == "control-plane"));
    let pinned = regex::Regex::new(r"^kindest/node:v\d+\.\d+\.\d+$").unwrap();
    for node in nodes {
        let image = node["image"].as_str().unwrap_or_default();
        assert!(pinned.is_match(image), "node image not pinned: {image:?}");
    }
    let up = read(&format!("{KIND}/up.sh"));
    assert!(up.contains(r#"registry_dir="/etc/containerd/certs.d/localhost:${REG_PORT}""#));
    assert!(up.contains(r#"REG_PORT="${REG_PORT:-5001}""#));
}

#[test]
fn kind_scripts_pass_bash_n_and_shellcheck() {
    let shellcheck = common::tool("SHELLCHECK", "shellcheck");
    for script in ["up.sh", "down.sh"] {
        let path = common::repo().join(KIND).join(script);
        run_ok(
            Command::new("bash").arg("-n").arg(&path),
            &format!("bash -n {script}"),
        );
        run_ok(
            Command::new(&shellcheck).arg(&path),
            &format!("shellcheck {script}"),
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("#!/usr/bin/env bash\n"),
            "{script}: shebang"
        );
        assert!(text.contains("set -euo pipefail"), "{script}: strict mode");
        assert!(text.contains("# Assumes"), "{script}: says what it assumes");
    }
}

#[test]
fn kind_up_installs_the_chart_and_a_sample_that_exist() {
    let up = read(&format!("{KIND}/up.sh"));
    for needed in [
        "helm upgrade --install tidescale \"$REPO/manifests/chart/tidescale\"",
        "--namespace keda --create-namespace",
        "--set image.registry=\"$REGISTRY\"",
        "--set image.repository=tidescale",
        "--set image.tag=\"$TAG\"",
        "docker push \"$REGISTRY/tidescale:$TAG\"",
        "kind create cluster --name \"$CLUSTER_NAME\" --config \"$HERE/cluster.yaml\"",
    ] {
        assert!(up.contains(needed), "up.sh lacks `{needed}`");
    }
    let referenced = regex::Regex::new(r#"\$workers/([\w./-]+\.yaml)"#).unwrap();
    let files: Vec<String> = referenced
        .captures_iter(&up)
        .map(|c| c[1].to_owned())
        .collect();
    assert!(
        files.len() >= 4,
        "up.sh deploys the RabbitMQ sample: {files:?}"
    );
    for file in files {
        let path = common::repo()
            .join("manifests/examples/workers")
            .join(&file);
        assert!(path.is_file(), "up.sh applies {file}, which does not exist");
    }
    // The image name up.sh rewrites must be the one the sample Deployment uses.
    assert!(
        read("manifests/examples/workers/rabbitmq/deployment.yaml")
            .contains("image: localhost:5001/tidescale-sample-workers:")
    );
}

// ---------------------------------------------------------------------------------------------
// Sample workloads
// ---------------------------------------------------------------------------------------------

const WORKERS: &str = "manifests/examples/workers";

fn worker_binaries() -> Vec<String> {
    common::files(&common::repo().join(WORKERS).join("src/bin"), "rs")
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn worker_yaml_files() -> Vec<PathBuf> {
    let root = common::repo().join(WORKERS);
    let mut files = common::files(&root, "yaml");
    for backend in ["rabbitmq", "kafka", "servicebus"] {
        files.extend(common::files(&root.join(backend), "yaml"));
    }
    files
}

#[test]
fn sample_manifests_pass_tidescale_check() {
    let files = worker_yaml_files();
    assert!(files.len() >= 8, "{files:?}");
    let output = common::tidescale()
        .arg("check")
        .args(&files)
        .output()
        .expect("run tidescale check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "tidescale check rejected the samples:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(summary.contains("5 valid, 0 invalid"), "{summary}");
}

#[test]
fn sample_builtin_objects_pass_kubernetes_validate_strict() {
    let validator = common::tool("KUBERNETES_VALIDATE", "kubernetes-validate");
    for version in ["1.25.0", "1.37.0"] {
        run_ok(
            Command::new(&validator)
                .args(["--strict", "--quiet", "-k", version])
                .args(worker_yaml_files()),
            &format!("kubernetes-validate --strict -k {version}"),
        );
    }
}

#[test]
fn each_sample_scales_its_own_hardened_deployment_running_a_worker_binary() {
    let binaries = worker_binaries();
    assert_eq!(
        binaries,
        ["kafka-worker", "rabbitmq-worker", "servicebus-worker"]
    );
    for backend in ["rabbitmq", "kafka", "servicebus"] {
        let dir = common::repo().join(WORKERS).join(backend);
        let deployments = yaml_docs(&dir.join("deployment.yaml"));
        let deployment = deployments
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .unwrap_or_else(|| panic!("{backend}/deployment.yaml has no Deployment"));
        let name = deployment["metadata"]["name"].as_str().expect("name");
        assert_eq!(name, format!("{backend}-worker"));
        assert_eq!(deployment["spec"]["replicas"], 0, "{name} starts at zero");
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        let container = &pod["containers"][0];
        assert_eq!(
            container["securityContext"]["readOnlyRootFilesystem"], true,
            "{name}"
        );
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"], false,
            "{name}"
        );
        let command = container["command"][0].as_str().expect("command");
        let binary = command.rsplit('/').next().unwrap_or_default();
        assert!(
            binaries.iter().any(|b| b == binary),
            "{name} runs {command}"
        );

        let scaled = yaml_docs(&dir.join("scaledobject.yaml"));
        let scaled_object = scaled
            .iter()
            .find(|d| d["kind"] == "ScaledObject")
            .unwrap_or_else(|| panic!("{backend}/scaledobject.yaml has no ScaledObject"));
        assert_eq!(scaled_object["spec"]["scaleTargetRef"]["name"], name);
        assert_eq!(
            scaled_object["metadata"]["namespace"],
            deployment["metadata"]["namespace"]
        );
    }
}
