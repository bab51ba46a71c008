//! The `writ` binary: a thin shell over the library (see `writ::cli`).

fn main() -> std::process::ExitCode {
    writ::cli::main()
}
