//! The `writ` binary: a thin shell over the library (see `writ::cli`).

/// jemalloc rather than the system allocator: every request allocates small objects on
/// one of several threads while the ledger's state grows by millions of them elsewhere,
/// the case jemalloc's per-thread caches and size classes are built for. Measured with
/// alternating runs of `writ-bench` (issuance, 32 connections): 3-5% less CPU per token
/// and a lower p99 than glibc's malloc (mimalloc, also tried, doubled the p99).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    writ::cli::main()
}
