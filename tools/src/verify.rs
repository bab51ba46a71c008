//! `writ-verify`: the auditor's standalone verifier of a writ ledger export, its signed
//! checkpoints and the server's Merkle proofs.
//!
//! It depends on `writ-schemas` (the vocabulary, the canonical encoding, the chain hash,
//! the Merkle tree and checkpoint notes) and on no part of the server, so an auditor can
//! read everything it trusts in an afternoon.

use std::io::{BufRead as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use writ_schemas::{
    CHECKPOINT_NOTE_BYTES_MAX, Checkpoint, ExportVerifier, Frontier, Hash, NoteKey,
    open_checkpoint, parse_export_line, verify_consistency, verify_inclusion,
};

/// Verify a writ ledger export (JSON lines): gap-free seqs from 1, the hash chain, every
/// record's hash, canonical timestamps in order, and every event's schema. With a signed
/// checkpoint (`GET /api/v1/ledger/head`'s `checkpoint`, kept as a file) and the
/// checkpoint key (its `checkpoint_key`): that the checkpoint is signed by that key and
/// that the export's first records are exactly the ones it commits to. With proofs
/// (`GET /api/v1/ledger/proofs/...`, kept as files): that a record is in the checkpoint's
/// tree, and that a newer checkpoint's ledger extends an older one's.
///
/// Exit codes: 0 everything asked for verifies; 1 the export itself does not verify (the
/// first bad record is named); 2 an input could not be read or the arguments do not fit
/// together; 3 a checkpoint is malformed or not signed by the key; 4 the export does not
/// hold what a checkpoint commits to (shorter, or other records); 5 a proof does not
/// verify against its checkpoints.
#[derive(Debug, Parser)]
#[command(name = "writ-verify", version, about, verbatim_doc_comment)]
struct Args {
    /// The export file, as `writ export` wrote it.
    export: Option<PathBuf>,

    /// A signed checkpoint note (the newer one, with --old-checkpoint).
    #[arg(long, value_name = "NOTE_FILE")]
    checkpoint: Option<PathBuf>,

    /// An older signed checkpoint the auditor kept, for --consistency.
    #[arg(long, value_name = "NOTE_FILE")]
    old_checkpoint: Option<PathBuf>,

    /// The checkpoint key, `<name>+<id>+<base64 key>` as the server publishes it.
    #[arg(long, value_name = "VERIFIER_KEY")]
    key: Option<String>,

    /// An inclusion proof (`/api/v1/ledger/proofs/inclusion`'s answer) for the record it
    /// names, in the tree of --checkpoint.
    #[arg(long, value_name = "PROOF_FILE", requires = "checkpoint")]
    inclusion: Option<PathBuf>,

    /// A consistency proof (`/api/v1/ledger/proofs/consistency`'s answer) from
    /// --old-checkpoint's tree to --checkpoint's.
    #[arg(long, value_name = "PROOF_FILE", requires_all = ["checkpoint", "old_checkpoint"])]
    consistency: Option<PathBuf>,
}

/// Why verification stopped, as an exit code and a line for people.
struct Verdict {
    code: u8,
    line: String,
}

impl Verdict {
    fn unreadable(line: impl Into<String>) -> Verdict {
        Verdict {
            code: 2,
            line: line.into(),
        }
    }

    fn failed(code: u8, line: impl Into<String>) -> Verdict {
        Verdict {
            code,
            line: format!("FAILED: {}", line.into()),
        }
    }
}

/// `/api/v1/ledger/proofs/inclusion`'s answer.
#[derive(Debug, Deserialize)]
struct InclusionProof {
    seq: u64,
    size: u64,
    record_hash: Hash,
    proof: Vec<Hash>,
}

/// `/api/v1/ledger/proofs/consistency`'s answer.
#[derive(Debug, Deserialize)]
struct ConsistencyProof {
    from: u64,
    to: u64,
    proof: Vec<Hash>,
}

fn main() -> ExitCode {
    match verify(&Args::parse()) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(Verdict { code, line }) => {
            if code == 2 {
                eprintln!("writ-verify: {line}");
            } else {
                println!("{line}");
            }
            ExitCode::from(code)
        }
    }
}

/// Everything the arguments ask for, in order; the lines to print when all verify.
fn verify(args: &Args) -> Result<Vec<String>, Verdict> {
    if args.export.is_none() && args.checkpoint.is_none() {
        return Err(Verdict::unreadable(
            "name an export to verify, or a --checkpoint with --key (see --help)",
        ));
    }
    let key = match (&args.key, &args.checkpoint) {
        (Some(text), _) => {
            Some(NoteKey::parse_verifier_key(text.trim()).map_err(|why| {
                Verdict::unreadable(format!("--key is not a checkpoint key: {why}"))
            })?)
        }
        (None, Some(_)) => {
            return Err(Verdict::unreadable(
                "--checkpoint needs --key: the checkpoint key the server published (`checkpoint_key` in GET /api/v1/ledger/head)",
            ));
        }
        (None, None) => None,
    };
    let mut lines = Vec::new();
    let open = |path: &Path| -> Result<Checkpoint, Verdict> {
        let key = key
            .as_ref()
            .ok_or_else(|| Verdict::unreadable("a checkpoint needs --key to be checked against"))?;
        let note = read_small(path, CHECKPOINT_NOTE_BYTES_MAX)?;
        open_checkpoint(&note, key)
            .map_err(|why| Verdict::failed(3, format!("checkpoint {}: {why}", path.display())))
    };
    let new = args.checkpoint.as_deref().map(open).transpose()?;
    let old = args.old_checkpoint.as_deref().map(open).transpose()?;
    for (path, checkpoint) in [(&args.old_checkpoint, &old), (&args.checkpoint, &new)] {
        if let (Some(path), Some(checkpoint)) = (path, checkpoint) {
            lines.push(format!(
                "ok: checkpoint {} is signed by {}: {} records of {}, root {}",
                path.display(),
                args.key.as_deref().unwrap_or_default().trim(),
                checkpoint.tree_size,
                checkpoint.origin,
                checkpoint.root
            ));
        }
    }
    let inclusion: Option<InclusionProof> = args.inclusion.as_deref().map(read_json).transpose()?;
    // The export's hash of the record the inclusion proof is about, when both are given.
    let mut held = None;
    if let Some(export) = &args.export {
        lines.push(verify_export(export)?);
        let committed: Vec<&Checkpoint> = [&old, &new].into_iter().flatten().collect();
        if !committed.is_empty() {
            let seq = inclusion.as_ref().map(|proof| proof.seq);
            let (matched, hash) = match_checkpoints(export, &committed, seq)?;
            lines.extend(matched);
            held = Some(hash);
        }
    }
    if let (Some(path), Some(proof), Some(checkpoint)) = (&args.inclusion, inclusion, &new) {
        if proof.size != checkpoint.tree_size {
            return Err(Verdict::unreadable(format!(
                "{} is a proof in the tree of {} records, the checkpoint's has {}: ask for size={}",
                path.display(),
                proof.size,
                checkpoint.tree_size,
                checkpoint.tree_size
            )));
        }
        let index = proof.seq.checked_sub(1).ok_or_else(|| {
            Verdict::unreadable(format!("{}: records count from 1", path.display()))
        })?;
        verify_inclusion(
            index,
            proof.size,
            &proof.record_hash,
            &proof.proof,
            &checkpoint.root,
        )
        .map_err(|why| {
            Verdict::failed(
                5,
                format!(
                    "record {} is not in the checkpoint's tree: {why}",
                    proof.seq
                ),
            )
        })?;
        if let Some(held) = held
            && held != Some(proof.record_hash)
        {
            return Err(Verdict::failed(
                4,
                format!(
                    "the proof is about record {} with hash {}, the export's record {} is {}",
                    proof.seq,
                    proof.record_hash,
                    proof.seq,
                    held.map_or_else(|| "missing".to_owned(), |h| h.to_string())
                ),
            ));
        }
        lines.push(format!(
            "ok: record {} (hash {}) is in the checkpoint's tree of {} records",
            proof.seq, proof.record_hash, proof.size
        ));
    }
    if let (Some(path), Some(old), Some(new)) = (&args.consistency, &old, &new) {
        let proof: ConsistencyProof = read_json(path)?;
        if (proof.from, proof.to) != (old.tree_size, new.tree_size) {
            return Err(Verdict::unreadable(format!(
                "{} goes from {} to {} records; the checkpoints hold {} and {}: ask for from={}&to={}",
                path.display(),
                proof.from,
                proof.to,
                old.tree_size,
                new.tree_size,
                old.tree_size,
                new.tree_size
            )));
        }
        verify_consistency(old.tree_size, new.tree_size, &old.root, &new.root, &proof.proof)
            .map_err(|why| {
                Verdict::failed(
                    5,
                    format!(
                        "the ledger of the newer checkpoint ({} records) does not extend the older one's ({} records): {why}",
                        new.tree_size, old.tree_size
                    ),
                )
            })?;
        lines.push(format!(
            "ok: the ledger of {} records extends the one of {} records the older checkpoint signed",
            new.tree_size, old.tree_size
        ));
    }
    Ok(lines)
}

/// The export's own chain; its line for people.
fn verify_export(path: &Path) -> Result<String, Verdict> {
    let shown = path.display();
    let mut file = std::fs::File::open(path)
        .map_err(|err| Verdict::unreadable(format!("cannot read {shown}: {err}")))?;
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
                return Err(Verdict::unreadable(format!("reading {shown}: {err}")));
            }
        };
        bar.inc(read as u64);
        if let Err(bad) = verifier.feed(&block[..read]) {
            bar.finish_and_clear();
            return Err(Verdict::failed(1, bad.to_string()));
        }
    }
    bar.finish_and_clear();
    let chain = verifier
        .finish()
        .map_err(|bad| Verdict::failed(1, bad.to_string()))?;
    Ok(format!(
        "ok: {} records verified; head is record {} with hash {}",
        chain.seq, chain.seq, chain.hash
    ))
}

/// That the export's first records are the ones each checkpoint commits to (the export
/// has already verified, so its lines parse and its hashes are the records' own); in the
/// same pass, the hash of record `seq` when one is asked for and the export holds it.
fn match_checkpoints(
    path: &Path,
    checkpoints: &[&Checkpoint],
    seq: Option<u64>,
) -> Result<(Vec<String>, Option<Hash>), Verdict> {
    let mut frontier = Frontier::new();
    let mut roots = Vec::new();
    let mut found = None;
    let wanted: Vec<u64> = checkpoints.iter().map(|c| c.tree_size).collect();
    for_each_record_hash(path, |at, hash| {
        frontier.push(hash);
        if wanted.contains(&at) {
            roots.push((at, frontier.root()));
        }
        if Some(at) == seq {
            found = Some(*hash);
        }
    })?;
    let mut lines = Vec::new();
    for checkpoint in checkpoints {
        let size = checkpoint.tree_size;
        let Some((_, root)) = roots.iter().find(|(seq, _)| *seq == size) else {
            return Err(Verdict::failed(
                4,
                format!(
                    "the export holds {} records; the checkpoint commits to {size}",
                    frontier.size()
                ),
            ));
        };
        if *root != checkpoint.root {
            return Err(Verdict::failed(
                4,
                format!(
                    "the export's first {size} records have Merkle root {root}, the checkpoint signed {}: they are not the records it commits to",
                    checkpoint.root
                ),
            ));
        }
        lines.push(format!(
            "ok: the export's first {size} records are the ones the checkpoint commits to"
        ));
    }
    Ok((lines, found))
}

/// Every record's seq and hash, in the export's order.
fn for_each_record_hash(path: &Path, mut visit: impl FnMut(u64, &Hash)) -> Result<(), Verdict> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|err| Verdict::unreadable(format!("cannot read {shown}: {err}")))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(err) => return Err(Verdict::unreadable(format!("reading {shown}: {err}"))),
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.is_empty() {
            continue;
        }
        let record = parse_export_line(text)
            .map_err(|why| Verdict::unreadable(format!("{shown}: {why}")))?;
        visit(record.seq, &record.hash);
    }
}

fn read_small(path: &Path, bytes_max: usize) -> Result<String, Verdict> {
    let shown = path.display();
    let text = std::fs::read(path)
        .map_err(|err| Verdict::unreadable(format!("cannot read {shown}: {err}")))?;
    if text.len() > bytes_max {
        return Err(Verdict::unreadable(format!(
            "{shown} holds {} bytes, more than the {bytes_max} expected of it",
            text.len()
        )));
    }
    String::from_utf8(text).map_err(|_| Verdict::unreadable(format!("{shown} is not UTF-8 text")))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, Verdict> {
    let text = read_small(path, 1 << 20)?;
    serde_json::from_str(&text).map_err(|err| {
        Verdict::unreadable(format!(
            "{} is not a proof writ serves: {err}",
            path.display()
        ))
    })
}
