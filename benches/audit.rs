//! The auditor's benchmarks: Merkle proof generation in a tree of 10 million records
//! (`WRIT_BENCH_PROOF_RECORDS` to change it), and audit-trail export throughput over a
//! 200,000-record ledger, offline (`writ export --audit`: replay, verify, rows) and as
//! the server tells it (`GET /api/v1/audit/export`: records read, entries told against
//! the live read models, rows).
//! Also what a restart pays to rebuild the Merkle tree, per record.
//! Run with `cargo bench --bench audit`; the README quotes the figures.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/workload.rs"]
mod workload;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use workload::{LEDGER_RECORDS, fill, open};
use writ::ledger::merkle::MerkleTree;
use writ::trail::{self, TrailFormat};
use writ::{Ledger, LedgerOptions, offline};
use writ_schemas::{Hash, leaf_hash};

const PROOF_RECORDS_DEFAULT: u64 = 10_000_000;

/// A tree over `records` made-up record hashes (the tree holds hashes only, so a real
/// ledger would build the same tree, as the server does at start).
fn tree(records: u64) -> MerkleTree {
    let mut tree = MerkleTree::default();
    for seq in 1..=records {
        let record = Hash(*blake3::hash(&seq.to_be_bytes()).as_bytes());
        tree.push_leaf(leaf_hash(&record), record);
    }
    tree
}

/// A fixed sequence of seqs spread over 1..=n (splitmix64), so runs compare.
fn spread(n: u64) -> impl FnMut() -> u64 {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n + 1
    }
}

fn proofs(c: &mut Criterion) {
    let records = std::env::var("WRIT_BENCH_PROOF_RECORDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(PROOF_RECORDS_DEFAULT);
    let started = std::time::Instant::now();
    let tree = tree(records);
    eprintln!(
        "built a Merkle tree of {records} records in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut group = c.benchmark_group(format!("proofs in a tree of {records} records"));
    let mut seq = spread(records);
    group.bench_function("inclusion proof (any record, the whole tree)", |b| {
        b.iter(|| tree.inclusion(seq(), records).unwrap());
    });
    let mut old = spread(records);
    group.bench_function(
        "consistency proof (any older size to the whole tree)",
        |b| {
            b.iter(|| tree.consistency(old(), records).unwrap());
        },
    );
    group.bench_function("root (any size)", |b| {
        b.iter(|| tree.root(seq()).unwrap());
    });
    group.finish();
}

fn export(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    {
        let storage = open(dir.path());
        let mut index = 0;
        fill(&storage, LEDGER_RECORDS, 4096, &mut index);
    }
    // What a restart pays for the tree: every record's hash read back from the segments
    // and its leaf hashed (no snapshot holds the tree); linear in the ledger's length.
    let mut group = c.benchmark_group("Merkle tree rebuilt at start");
    group.sample_size(10);
    group.throughput(Throughput::Elements(LEDGER_RECORDS));
    group.bench_function("from a 200k-record ledger", |b| {
        let storage = open(dir.path());
        b.iter(|| {
            let tree = MerkleTree::rebuild(&storage, LEDGER_RECORDS).unwrap();
            assert_eq!(tree.size(), LEDGER_RECORDS);
        });
    });
    group.finish();

    let mut group = c.benchmark_group("audit trail export of 200k records");
    group.sample_size(10);
    group.throughput(Throughput::Elements(LEDGER_RECORDS));
    for format in [TrailFormat::Jsonl, TrailFormat::Csv] {
        let name = format!("offline, {format:?}: replay, verify, rows");
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut sink = std::io::sink();
                let rows = offline::export_audit(dir.path(), format, None, &mut sink, &mut |_| ())
                    .unwrap();
                assert_eq!(rows, LEDGER_RECORDS);
            });
        });
    }
    let options = LedgerOptions {
        snapshot_every_records: 0,
        snapshot_on_close: false,
        ..LedgerOptions::default()
    };
    let (ledger, _) = Ledger::open_embedded(dir.path(), options).unwrap();
    for format in [TrailFormat::Jsonl, TrailFormat::Csv] {
        let name = format!("server, {format:?}: read, tell against live state, rows");
        group.bench_function(name, |b| {
            b.iter(|| {
                let (mut rows, mut bytes) = (0u64, format.start());
                trail::tell(&ledger, None, 1, LEDGER_RECORDS, |entries| {
                    format.write_rows(entries, &mut bytes);
                    rows += entries.len() as u64;
                    bytes.clear();
                    true
                })
                .unwrap();
                assert_eq!(rows, LEDGER_RECORDS);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, proofs, export);
criterion_main!(benches);
