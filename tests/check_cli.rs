//! `tidescale check` as users run it: files and standard input, exit statuses, output format,
//! the shipped examples, and `--help` text.

mod common;

use tidescale::check::{NoTriggerValidation, check_text};

const VALID: &str = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: web\nspec:\n  scaleTargetRef:\n    name: web\n  triggers:\n    - type: rabbitmq\n      metadata:\n        host: amqp://guest:guest@rabbit:5672/%2f\n        queueName: q\n";

#[test]
fn every_example_passes_check() {
    let examples = common::files(&common::repo().join("manifests/examples"), "yaml");
    assert!(examples.len() >= 8, "examples are missing: {examples:?}");
    let mut kinds = std::collections::BTreeSet::new();
    for path in &examples {
        let text = std::fs::read_to_string(path).unwrap();
        let reports = check_text(&path.display().to_string(), &text, &NoTriggerValidation).unwrap();
        for report in &reports {
            assert!(
                report.problems().is_empty(),
                "{}: {:?}",
                path.display(),
                report.problems()
            );
            if let tidescale::check::Verdict::Valid { kind, .. } = &report.verdict {
                kinds.insert(kind.clone());
            }
        }
    }
    let expected = [
        "ClusterTriggerAuthentication",
        "ScaledJob",
        "ScaledObject",
        "TriggerAuthentication",
    ];
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), expected);
    let mut args = vec!["check".to_owned()];
    args.extend(examples.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = common::run_tidescale(&args, "");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn valid_input_on_stdin_exits_zero() {
    let output = common::run_tidescale(&["check", "-"], VALID);
    assert_eq!(output.status.code(), Some(0));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("1 valid, 0 invalid"));
}

#[test]
fn problems_exit_one_with_file_doc_path_lines() {
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\n{}",
        VALID.replace(
            "name: web\nspec",
            "name: web\nspec:\n  minReplicaCount: 3\n  maxReplicaCount: 2\nspec_"
        )
    );
    let text = text.replace("spec_:\n", "");
    let output = common::run_tidescale(&["check", "-"], &text);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        stdout,
        "-:2: .spec.minReplicaCount: MinReplicaCount=3 must not be greater than MaxReplicaCount=2\n"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("-:1: note: skipped v1 ConfigMap: not a keda.sh object"),
        "{stderr}"
    );
}

#[test]
fn unreadable_input_exits_two_and_other_files_are_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "spec: [unclosed\n").unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, VALID.replace("name: web\nspec", "name: Web\nspec")).unwrap();
    let missing = dir.path().join("missing.yaml");
    let output = common::run_tidescale(
        &[
            "check",
            bad.to_str().unwrap(),
            missing.to_str().unwrap(),
            good.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("bad.yaml: document 1: invalid YAML"),
        "{stderr}"
    );
    assert!(stderr.contains("missing.yaml: cannot read"), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("good.yaml:1: .metadata.name: Invalid value: \"Web\""),
        "{stdout}"
    );
}

#[test]
fn binary_input_is_unreadable_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob.yaml");
    std::fs::write(&path, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    let output = common::run_tidescale(&["check", path.to_str().unwrap()], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not UTF-8 text"));
}

#[test]
fn json_output_reports_every_document() {
    let output = common::run_tidescale(
        &["check", "--output", "json", "-"],
        &format!("{VALID}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n"),
    );
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report[0]["status"], "valid");
    assert_eq!(report[0]["kind"], "ScaledObject");
    assert_eq!(report[1]["status"], "skipped");
}

#[test]
fn help_lists_subcommands_with_descriptions() {
    let output = common::run_tidescale(&["--help"], "");
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("drop-in replacement for KEDA"), "{help}");
    assert!(
        help.contains("check") && help.contains("Validate ScaledObject"),
        "{help}"
    );
    assert!(
        help.contains("manifests") && help.contains("Print the manifests"),
        "{help}"
    );
    let output = common::run_tidescale(&["check", "--help"], "");
    let help = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "FILE:DOC: .json.path: what is wrong",
        "Exit status",
        "standard input",
        "--output",
    ] {
        assert!(
            help.contains(expected),
            "check --help lacks {expected:?}:\n{help}"
        );
    }
}

#[test]
fn version_is_printed() {
    let output = common::run_tidescale(&["--version"], "");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        format!("tidescale {}", env!("CARGO_PKG_VERSION"))
    );
}
