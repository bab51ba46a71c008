//! Ledger benchmarks: append throughput with group commit (one fdatasync per batch) at
//! batch sizes 1, 16 and 256; `writ verify` and replay throughput over 200,000 records.
//! Run with `cargo bench --bench ledger`; the README quotes the figures.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/workload.rs"]
mod workload;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use workload::{LEDGER_RECORDS, fill, open};
use writ::offline;

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append (one fdatasync per batch)");
    group.sample_size(10);
    for batch in [1usize, 16, 256] {
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path());
        let mut index = 0;
        fill(&storage, 2, 2, &mut index);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| fill(&storage, batch as u64, batch, &mut index));
        });
    }
    group.finish();
}

fn read_side(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    {
        let storage = open(dir.path());
        let mut index = 0;
        fill(&storage, LEDGER_RECORDS, 4096, &mut index);
    }
    let mut group = c.benchmark_group("ledger of 200k records");
    group.sample_size(10);
    group.throughput(Throughput::Elements(LEDGER_RECORDS));
    group.bench_function("verify", |b| {
        b.iter(
            || match offline::verify_dir(dir.path(), &mut |_| ()).unwrap() {
                offline::Verdict::Intact(chain) => assert_eq!(chain.seq, LEDGER_RECORDS),
                offline::Verdict::Broken(bad) => panic!("{bad}"),
            },
        );
    });
    group.bench_function("replay (verify, decode, fold)", |b| {
        b.iter(|| {
            let state = offline::replay(dir.path(), None, &mut |_| ()).unwrap();
            assert_eq!(state.head().seq, LEDGER_RECORDS);
        });
    });
    group.finish();
}

criterion_group!(benches, append, read_side);
criterion_main!(benches);
