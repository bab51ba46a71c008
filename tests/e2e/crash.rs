//! The crash test: a writer process under load is killed with SIGKILL at random points;
//! every time, the ledger opens, verifies, and holds every acknowledged record.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

use rand::RngExt as _;
use writ_schemas::Digest;

use crate::kit::*;

const KILLS: usize = 20;

#[test]
fn sigkill_under_load_never_loses_an_acknowledged_record() {
    about_the_embedded_store("it kills the writer of segment files and checks their recovery");
    let dir = temp();
    let shown = dir.path().display().to_string();
    let mut rng = rand::rng();
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    let mut seq_acknowledged = 0u64;
    for round in 0..KILLS {
        let kill_after = rng.random_range(1..4000usize);
        let prefix = format!("r{round}");
        let mut child = writ_command()
            .args([
                "internal",
                "append-load",
                "--data-dir",
                &shown,
                "--count",
                "100000000",
                "--concurrency",
                "64",
            ])
            .args(["--key-prefix", &prefix])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("spawning writ: {err}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("piped stdout"));
        let mut lines = BufReader::new(stdout).lines();
        let mut acks = 0;
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            if let Some(ack) = parse_ack(&line) {
                acknowledged.insert(ack.0);
                seq_acknowledged = seq_acknowledged.max(ack.1);
                acks += 1;
                if acks == kill_after {
                    break;
                }
            }
        }
        child.kill().unwrap_or_else(|err| panic!("kill -9: {err}"));
        // Acknowledgements already in the pipe were made before the kill: they count too.
        for line in lines.map_while(Result::ok) {
            if let Some(ack) = parse_ack(&line) {
                acknowledged.insert(ack.0);
                seq_acknowledged = seq_acknowledged.max(ack.1);
            }
        }
        let status = child.wait().unwrap_or_else(|err| panic!("{err}"));
        assert!(
            status.code().is_none(),
            "round {round}: the writer ended by itself ({status}) before {kill_after} acks"
        );

        let options = writ::LedgerOptions {
            snapshot_on_close: false,
            ..writ::LedgerOptions::default()
        };
        let (ledger, report) =
            writ::Ledger::open_embedded(dir.path(), options).unwrap_or_else(|err| {
                panic!("round {round}: the ledger does not open after kill -9: {err}")
            });
        let digest = Digest::of(writ::harness::LOAD_TOKEN.as_bytes());
        let missing: Vec<String> = ledger.read(|state| {
            let token = state.token_by_digest(&digest);
            acknowledged
                .iter()
                .filter(|key| token.is_none_or(|t| t.idempotent_answer(key).is_none()))
                .cloned()
                .collect()
        });
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged but lost: {missing:?} (recovery: {report:?})"
        );
        assert!(
            ledger.head().seq >= seq_acknowledged,
            "round {round}: head {} < acknowledged {seq_acknowledged}",
            ledger.head().seq
        );
        drop(ledger);

        let run = writ(&["verify", &shown]);
        assert_eq!(
            run.code,
            Some(0),
            "round {round}: {} {}",
            run.stdout,
            run.stderr
        );
    }
    assert!(
        acknowledged.len() >= KILLS,
        "every round acknowledged at least one operation"
    );
}

fn parse_ack(line: &str) -> Option<(String, u64)> {
    let mut parts = line.strip_prefix("ack ")?.split(' ');
    let key = parts.next()?.to_owned();
    let seq = parts.next()?.parse().ok()?;
    Some((key, seq))
}
