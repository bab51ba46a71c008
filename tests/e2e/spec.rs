//! LEDGER.md is enough to verify an export: its reference verifier, in Python with only
//! a BLAKE3 library, is extracted from the document and run against a real export.

use std::process::Command;

use crate::kit::*;

/// The Python code block of schemas/LEDGER.md.
fn reference_verifier() -> String {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/LEDGER.md"))
        .unwrap_or_default();
    let start = spec
        .find("```python\n")
        .map(|at| at + "```python\n".len())
        .unwrap_or_else(|| panic!("LEDGER.md has a python block"));
    let end = spec[start..]
        .find("```")
        .unwrap_or_else(|| panic!("the python block ends"));
    spec[start..start + end].to_owned()
}

fn python(script: &std::path::Path, export: &std::path::Path) -> (bool, String) {
    let output = Command::new("python3")
        .arg(script)
        .arg(export)
        .output()
        .unwrap_or_else(|err| panic!("python3 is needed (tools/test.sh sets it up): {err}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn the_reference_verifier_in_ledger_md_verifies_a_real_export_and_catches_tampering() {
    let dir = temp();
    let script = dir.path().join("verify.py");
    std::fs::write(&script, reference_verifier()).unwrap_or_else(|err| panic!("{err}"));

    let vectors =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/vectors/ledger.jsonl");
    let (ok, said) = python(&script, &vectors);
    let records = std::fs::read_to_string(&vectors)
        .unwrap_or_else(|err| panic!("{err}"))
        .lines()
        .count();
    assert!(
        ok && said.contains(&format!("ok: {records} records")),
        "{said}"
    );

    let data = dir.path().join("data");
    make_ledger(&data, 30);
    let export = dir.path().join("export.jsonl");
    export_to(&data, &export);
    let (ok, said) = python(&script, &export);
    assert!(ok && said.contains("ok: 32 records"), "{said}");

    let text = std::fs::read_to_string(&export).unwrap_or_default();
    let tampered: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(index, line)| {
            if index == 9 {
                line.replacen("\"load\"", "\"l0ad\"", 1)
            } else {
                line.to_owned()
            }
        })
        .collect();
    std::fs::write(&export, tampered.join("\n") + "\n").unwrap_or_else(|err| panic!("{err}"));
    let (ok, said) = python(&script, &export);
    assert!(!ok && said.contains("record 10: altered"), "{said}");
}

#[test]
fn the_python_merkle_script_reproduces_the_merkle_vectors() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/merkle_vectors.py");
    let vectors = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/vectors");
    let (ok, said) = python(&script, &vectors);
    assert!(ok && said.starts_with("ok: "), "{said}");
}
