//! `tidescale check`: offline validation of keda.sh manifests, usable in CI.
//!
//! Every keda.sh object is checked against its CRD's `openAPIV3Schema` (defaults applied,
//! unknown fields reported) and the rules KEDA's admission webhook enforces that need no
//! cluster. Documents of other API groups are skipped with a note. Problems print as
//! `FILE:DOC: .json.path: what is wrong`; the exit status is 0 (all valid), 1 (problems) or
//! 2 (an input could not be read or parsed).

mod input;
mod object;
mod report;
pub mod rules;

use std::path::Path;
use std::process::ExitCode;

pub use input::{InputError, MAX_INPUT_BYTES, parse_documents, read_input};
pub use object::check_document;
pub use report::{DocumentReport, Problem, Verdict};
pub use rules::{NoTriggerValidation, TriggerContext, TriggerValidator};

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
            })
        })
        .collect();
    Ok(reports)
}

/// Run `tidescale check` and return its exit status.
pub fn run(args: &CheckArgs) -> ExitCode {
    let triggers = NoTriggerValidation;
    let mut reports = Vec::new();
    let mut unreadable = false;
    for path in &args.files {
        let file = display_name(path);
        match read_input(path).and_then(|text| check_text(&file, &text, &triggers)) {
            Ok(file_reports) => reports.extend(file_reports),
            Err(e) => {
                eprintln!("{file}: {e}");
                unreadable = true;
            }
        }
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
