//! The scaling loop's own runtime: the scheduler and every poll (with the scaler connections
//! they open) run on a few threads of their own, apart from the controller, the watches, the
//! metrics adapter and `/metrics`.
//!
//! Why: a poll is a few microseconds of work around a network round trip. On tokio's shared
//! multi-threaded runtime each one woke an idle worker to steal it and parked it again, and at
//! 10,000 polls a second those context switches cost a quarter of the operator's CPU
//! (`benches/operator_scale.rs`: 0.60 → 0.44 cores on one thread). Kept apart, polls also never
//! start late behind a long synchronous step elsewhere (a `/metrics` render of 10,000 objects,
//! a relist): poll lateness is the scheduler's alone.
//!
//! One thread (a current-thread runtime) serves ~20,000 polls a second of a cheap HTTP trigger
//! on this project's 2-core machines; `--poll-threads` gives it more (a multi-threaded runtime).
//! The runtime is process-wide and lives until the process exits: scaler connection pools are
//! process-wide too, and their connections' tasks must not die with one operator instance
//! (tests and `tidescale dev` start several in one process).

use std::sync::{Mutex, PoisonError, mpsc};

use tokio::runtime::{Builder, Handle};

static POLL_RUNTIME: Mutex<Option<Handle>> = Mutex::new(None);

/// The poll runtime, started with `threads` threads on first use (later calls get the same
/// runtime whatever they ask for). Fails only when the OS refuses a thread.
pub fn poll_runtime(threads: usize) -> std::io::Result<Handle> {
    let mut runtime = POLL_RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = runtime.as_ref() {
        return Ok(handle.clone());
    }
    let handle = start(threads.max(1))?;
    *runtime = Some(handle.clone());
    Ok(handle)
}

/// Build the runtime on a thread that keeps it alive (a runtime may not be dropped inside
/// another, and this one is never dropped).
fn start(threads: usize) -> std::io::Result<Handle> {
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("tidescale-poll".to_owned())
        .spawn(move || {
            let runtime = if threads == 1 {
                Builder::new_current_thread().enable_all().build()
            } else {
                Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("tidescale-poll")
                    .enable_all()
                    .build()
            };
            match runtime {
                Ok(runtime) => {
                    let _ = sender.send(Ok(runtime.handle().clone()));
                    // A current-thread runtime runs its tasks only while blocked on here.
                    runtime.block_on(std::future::pending::<()>());
                }
                Err(error) => {
                    let _ = sender.send(Err(error));
                }
            }
        })?;
    receiver
        .recv()
        .map_err(|_| std::io::Error::other("the poll runtime's thread ended at start"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn polls_run_on_the_poll_thread_and_the_runtime_is_shared() {
        let first = poll_runtime(1).expect("starts");
        let second = poll_runtime(4).expect("same runtime");
        let name = first
            .spawn(async { std::thread::current().name().map(str::to_owned) })
            .await
            .expect("runs");
        assert_eq!(name.as_deref(), Some("tidescale-poll"));
        assert_eq!(first.id(), second.id());
        // Timers and I/O work there.
        let elapsed = second
            .spawn(async {
                let started = tokio::time::Instant::now();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
                (started.elapsed(), listener.is_ok())
            })
            .await
            .expect("runs");
        assert!(elapsed.0 >= std::time::Duration::from_millis(20));
        assert!(elapsed.1);
    }
}
