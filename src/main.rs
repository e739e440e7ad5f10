//! The `tidescale` binary: parse the command line and dispatch. Everything else lives in the
//! library so tests and benches can call it.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tidescale::cli::Cli::parse().run()
}
