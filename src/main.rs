//! The `tidescale` binary: parse the command line and dispatch. Everything else lives in the
//! library so tests and benches can call it.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc instead of the system allocator: every metrics read and poll allocates a little,
/// glibc's malloc/free were a sixth of the adapter's CPU per request
/// (benches/adapter_latency.rs, which runs with the same allocator), and glibc held about
/// twice the live heap resident in the operator at scale (benches/operator_scale.rs);
/// mimalloc was as fast but held more. Its options are built in (`.cargo/config.toml`). The
/// `system-allocator` feature keeps glibc's, for heap profilers that intercept malloc
/// (heaptrack, valgrind).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    tidescale::cli::Cli::parse().run()
}
