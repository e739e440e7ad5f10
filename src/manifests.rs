//! `tidescale manifests`: print what tidescale installs, generated from the Rust types so the
//! committed files under `manifests/` can be checked against the code.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::crd;

/// Print every CRD as one YAML stream.
pub fn print_crds() -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(crd::crds_yaml().as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not worth a panic or a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidescale: cannot write to standard output: {e}");
            ExitCode::from(2)
        }
    }
}

/// Write one YAML file per CRD into `dir` (`keda.sh_<plural>.yaml`, as KEDA names them).
pub fn write_crds(dir: &Path) -> ExitCode {
    for kind in crd::CrdKind::ALL {
        let path = dir.join(kind.file_name());
        if let Err(e) = std::fs::write(&path, crd::crd_yaml(kind)) {
            eprintln!("tidescale: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
