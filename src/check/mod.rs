//! `tidescale check`: offline validation of keda.sh manifests, usable in CI.
//!
//! Every keda.sh object is checked against its CRD's `openAPIV3Schema` (defaults applied,
//! unknown fields reported) and the rules KEDA's admission webhook enforces that need no
//! cluster. Documents of other API groups are skipped with a note. Problems print as
//! `FILE:DOC: .json.path: what is wrong`; the exit status is 0 (all valid), 1 (problems) or
//! 2 (an input could not be read or parsed).

mod bundle;
mod input;
mod object;
mod report;
pub mod rules;
mod scaler_validation;

use std::path::Path;
use std::process::ExitCode;

pub use bundle::Bundle;
pub use input::{InputError, MAX_INPUT_BYTES, parse_documents, read_input};
pub use object::check_document;
pub use report::{DocumentReport, Problem, Problems, Verdict};
pub use rules::{NoTriggerValidation, TriggerContext, TriggerValidator};
pub use scaler_validation::ScalerValidator;

use crate::cli::{CheckArgs, OutputFormat};

/// Exit status when every object is valid.
pub const EXIT_VALID: u8 = 0;
/// Exit status when any object has a problem.
pub const EXIT_INVALID: u8 = 1;
/// Exit status when an input could not be read or parsed.
pub const EXIT_UNREADABLE: u8 = 2;

/// Check one input's text. `file` names it in the reports.
pub fn check_text(
    file: &str,
    text: &str,
    triggers: &dyn TriggerValidator,
) -> Result<Vec<DocumentReport>, InputError> {
    let documents = parse_documents(text)?;
    let reports = documents
        .into_iter()
        .enumerate()
        .filter_map(|(i, doc)| {
            let verdict = check_document(doc, triggers)?;
            Some(DocumentReport {
                file: file.to_owned(),
                document: i + 1,
                verdict,
                notes: Vec::new(),
            })
        })
        .collect();
    Ok(reports)
}

/// Check several inputs as one bundle: a trigger's TriggerAuthentication, Secrets and scale
/// target may sit in any of them. Returns the reports and the inputs that could not be read.
pub fn check_inputs(
    inputs: &[(String, String)],
    cluster_object_namespace: &str,
) -> (Vec<DocumentReport>, Vec<(String, InputError)>) {
    let mut parsed = Vec::new();
    let mut unreadable = Vec::new();
    for (file, text) in inputs {
        match parse_documents(text) {
            Ok(documents) => parsed.push((file, documents)),
            Err(e) => unreadable.push((file.clone(), e)),
        }
    }
    let bundle = Bundle::from_documents(parsed.iter().flat_map(|(_, docs)| docs));
    let validator = ScalerValidator::new(&bundle, cluster_object_namespace);
    let mut reports = Vec::new();
    for (file, documents) in parsed {
        for (i, doc) in documents.into_iter().enumerate() {
            if let Some(verdict) = check_document(doc, &validator) {
                reports.push(DocumentReport {
                    file: file.clone(),
                    document: i + 1,
                    verdict,
                    notes: validator.take_notes(),
                });
            }
        }
    }
    (reports, unreadable)
}

/// Run `tidescale check` and return its exit status.
pub fn run(args: &CheckArgs) -> ExitCode {
    let mut inputs = Vec::new();
    let mut unreadable = false;
    for path in &args.files {
        let file = display_name(path);
        match read_input(path) {
            Ok(text) => inputs.push((file, text)),
            Err(e) => {
                eprintln!("{file}: {e}");
                unreadable = true;
            }
        }
    }
    let (reports, unparsed) = check_inputs(&inputs, &args.cluster_object_namespace);
    for (file, e) in &unparsed {
        eprintln!("{file}: {e}");
        unreadable = true;
    }
    let printed = match args.output {
        OutputFormat::Text => print_text(&reports),
        OutputFormat::Json => print_json(&reports),
    };
    let invalid = reports.iter().any(|r| !r.problems().is_empty());
    let status = if unreadable || printed.is_err() {
        EXIT_UNREADABLE
    } else if invalid {
        EXIT_INVALID
    } else {
        EXIT_VALID
    };
    ExitCode::from(status)
}

fn display_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "-".to_owned()
    } else {
        path.display().to_string()
    }
}

fn print_text(reports: &[DocumentReport]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let (mut valid, mut invalid, mut skipped) = (0, 0, 0);
    for report in reports {
        match &report.verdict {
            Verdict::Valid { .. } => valid += 1,
            Verdict::Invalid { .. } => invalid += 1,
            Verdict::Skipped { api_version, kind } => {
                skipped += 1;
                eprintln!(
                    "{}:{}: note: skipped {api_version} {kind}: not a keda.sh object",
                    report.file, report.document
                );
            }
        }
        for line in report.problem_lines() {
            writeln!(out, "{line}")?;
        }
        for note in &report.notes {
            eprintln!("{}:{}: note: {note}", report.file, report.document);
        }
    }
    eprintln!(
        "checked {} keda.sh object(s): {valid} valid, {invalid} invalid; {skipped} other document(s) skipped",
        valid + invalid
    );
    Ok(())
}

fn print_json(reports: &[DocumentReport]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, reports)?;
    writeln!(out)
}
