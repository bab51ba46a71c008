//! `writ-bench` against a real server: every scenario runs without a failed request, and
//! the ledger holds exactly the operations and exchanged tokens the bench reports, and
//! still verifies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use crate::kit::*;

/// The `writ-bench` executable, built beside `writ` by `cargo test --workspace` (or
/// `cargo build -p writ-tools`).
fn writ_bench() -> PathBuf {
    let writ = PathBuf::from(env!("CARGO_BIN_EXE_writ"));
    let dir = writ
        .parent()
        .unwrap_or_else(|| panic!("{} has no folder", writ.display()));
    let bench = dir.join(format!("writ-bench{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bench.is_file(),
        "{} is missing: run `cargo build -p writ-tools` (cargo test --workspace builds it)",
        bench.display()
    );
    bench
}

/// The fields of each `RESULT` line, by scenario.
fn results(stdout: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("RESULT "))
        .map(|line| {
            let fields: BTreeMap<String, String> = line
                .split(' ')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            (fields["scenario"].clone(), fields)
        })
        .collect()
}

#[test]
fn bench_runs_every_scenario_cleanly_and_the_ledger_holds_exactly_its_operations() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let output = Command::new(writ_bench())
        .env_remove("WRIT_ADMIN_TOKEN")
        .args(["--writ-url", &server.base, "--admin-token", &admin])
        .args(["--scenario", "all", "--duration", "1s", "--warmup", "0s"])
        .args(["--connections", "2"])
        .output()
        .unwrap_or_else(|err| panic!("running writ-bench: {err}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let results = results(&stdout);
    assert_eq!(
        results.keys().collect::<Vec<_>>(),
        ["exchange", "introspect", "issue", "operations"],
        "{stdout}"
    );
    for (scenario, fields) in &results {
        let count = |name: &str| -> u64 {
            fields[name]
                .parse()
                .unwrap_or_else(|_| panic!("{scenario}: {name} in {fields:?}"))
        };
        assert!(count("requests") > 0, "{scenario}: {fields:?}");
        assert_eq!(
            (count("non2xx"), count("errors"), count("connections")),
            (0, 0, 2),
            "{scenario}: {fields:?}\n{stderr}"
        );
    }
    let requests = |scenario: &str| -> usize {
        results[scenario]["requests"]
            .parse()
            .unwrap_or_else(|_| panic!("{stdout}"))
    };
    let (operations, exchanged) = (requests("operations"), requests("exchange"));

    assert_eq!(server.stop(), Some(0));
    let verified = writ(&["verify", &dir.path().display().to_string()]);
    assert_eq!(
        verified.code,
        Some(0),
        "{}{}",
        verified.stdout,
        verified.stderr
    );
    let export = dir.path().join("export.jsonl");
    export_to(dir.path(), &export);
    let exported = std::fs::read_to_string(&export).unwrap_or_default();
    let recorded = exported.matches("\"type\":\"OperationRecorded\"").count();
    assert_eq!(
        recorded, operations,
        "every operation the bench counted, and no other, is in the ledger"
    );
    let exchange_grant = "\"grant_type\":\"urn:ietf:params:oauth:grant-type:token-exchange\"";
    assert_eq!(
        exported.matches(exchange_grant).count(),
        exchanged,
        "every token the exchange scenario got, on the person's behalf, is in the ledger"
    );
}
