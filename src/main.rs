//! The `tidescale` binary: parse the command line and dispatch. Everything else lives in the
//! library so tests and benches can call it.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: every metrics read and poll allocates a little,
/// and glibc's malloc/free were a sixth of the adapter's CPU per request
/// (benches/adapter_latency.rs, which runs with the same allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tidescale::cli::Cli::parse().run()
}
