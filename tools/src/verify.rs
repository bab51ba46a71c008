//! `writ-verify`: the auditor's standalone verifier of a writ ledger export.
//!
//! It depends on `writ-schemas` alone (the vocabulary, the canonical encoding and the
//! chain hash), never on the server, so an auditor can read everything it trusts in an
//! afternoon. Exit codes: 0 the export verifies; 1 it does not (the first bad record is
//! named); 2 it could not be read.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use writ_schemas::ExportVerifier;

/// Verify a writ ledger export (JSON lines): gap-free seqs from 1, the hash chain,
/// every record's hash, canonical timestamps in order, and every event's schema.
#[derive(Debug, Parser)]
#[command(name = "writ-verify", version, about)]
struct Args {
    /// The export file, as `writ export` or `GET /api/v1/ledger/records` wrote it.
    export: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let shown = args.export.display();
    let mut file = match std::fs::File::open(&args.export) {
        Ok(file) => file,
        Err(err) => {
            eprintln!("writ-verify: cannot read {shown}: {err}");
            return ExitCode::from(2);
        }
    };
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("verifying [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut verifier = ExportVerifier::new(threads);
    let mut block = vec![0u8; 8 * 1024 * 1024];
    loop {
        let read = match file.read(&mut block) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) => {
                bar.finish_and_clear();
                eprintln!("writ-verify: reading {shown}: {err}");
                return ExitCode::from(2);
            }
        };
        bar.inc(read as u64);
        if let Err(bad) = verifier.feed(&block[..read]) {
            bar.finish_and_clear();
            println!("FAILED: {bad}");
            return ExitCode::from(1);
        }
    }
    bar.finish_and_clear();
    match verifier.finish() {
        Ok(chain) => {
            println!(
                "ok: {} records verified; head is record {} with hash {}",
                chain.seq, chain.seq, chain.hash
            );
            ExitCode::SUCCESS
        }
        Err(bad) => {
            println!("FAILED: {bad}");
            ExitCode::from(1)
        }
    }
}
