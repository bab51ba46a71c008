#!/usr/bin/env python3
"""Reproduces schemas/vectors/merkle.json from schemas/vectors/ledger.jsonl, following
schemas/LEDGER.md (sections 5 and 10) with the standard library and `blake3` alone:
the record hashes, the Merkle root, the inclusion proof and the consistency proof, each
both recomputed and verified. Prints "ok: ..." and exits 0, or names the first
difference and exits 1.

    python3 tools/merkle_vectors.py [VECTORS_DIR]
"""

import json
import os
import sys

import blake3


def canon(v):  # LEDGER.md section 2, for the ledger's JSON subset
    if isinstance(v, dict):
        items = sorted(v.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canon(x) for k, x in items) + "}"
    if isinstance(v, list):
        return "[" + ",".join(canon(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)


def record_hash(r):  # LEDGER.md section 5
    ts = r["ts"].encode()
    m = (r["seq"].to_bytes(8, "big") + bytes.fromhex(r["prev_hash"]) + len(ts).to_bytes(4, "big")
         + ts + canon(r["event"]).encode())
    return blake3.blake3(m, derive_key_context="writ ledger v1 record").digest()


def leaf(h):
    return blake3.blake3(b"\x00" + h).digest()


def node(left, right):
    return blake3.blake3(b"\x01" + left + right).digest()


def split(n):  # the largest power of two below n
    return 1 << ((n - 1).bit_length() - 1)


def mth(d):  # RFC 9162 2.1.1
    if not d:
        return blake3.blake3(b"").digest()
    if len(d) == 1:
        return leaf(d[0])
    k = split(len(d))
    return node(mth(d[:k]), mth(d[k:]))


def path(m, d):  # RFC 9162 2.1.3.1
    if len(d) <= 1:
        return []
    k = split(len(d))
    return path(m, d[:k]) + [mth(d[k:])] if m < k else path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m, d, whole):  # RFC 9162 2.1.4.1
    if m == len(d):
        return [] if whole else [mth(d)]
    k = split(len(d))
    if m <= k:
        return subproof(m, d[:k], whole) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def verify_inclusion(m, n, record, proof, root):  # RFC 9162 2.1.3.2
    if m >= n:
        return False
    fn, sn, r = m, n - 1, leaf(record)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(m, n, old_root, new_root, proof):  # RFC 9162 2.1.4.2
    if m == n:
        return not proof and old_root == new_root
    if m == 0 or m > n:
        return False
    if m & (m - 1) == 0:
        proof = [old_root] + proof
    if not proof:
        return False
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    vectors = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "schemas", "vectors")
    with open(os.path.join(vectors, "ledger.jsonl"), "rb") as f:
        records = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(vectors, "merkle.json")) as f:
        want = json.load(f)

    def check(what, ok):
        if not ok:
            print(f"FAILED: {what}")
            sys.exit(1)

    hashes = []
    for r in records:
        h = record_hash(r)
        check(f"record {r['seq']}: hash", h.hex() == r["hash"])
        hashes.append(h)
    n = len(hashes)
    root = mth(hashes)
    check("tree size", want["tree_size"] == n)
    check("root", root.hex() == want["root"])
    check("leaf of record 1", leaf(hashes[0]).hex() == want["leaf_1"])

    inc = want["inclusion"]
    m = inc["leaf_index"]
    check("inclusion: leaf index is seq - 1", m == inc["seq"] - 1)
    proof = [bytes.fromhex(h) for h in inc["proof"]]
    check("inclusion: proof", path(m, hashes[: inc["tree_size"]]) == proof)
    check("inclusion: verifies", verify_inclusion(m, inc["tree_size"], hashes[m], proof, root))

    con = want["consistency"]
    old, new = con["from"], con["to"]
    old_root = mth(hashes[:old])
    check("consistency: old root", old_root.hex() == con["from_root"])
    proof = [bytes.fromhex(h) for h in con["proof"]]
    check("consistency: proof", subproof(old, hashes[:new], True) == proof)
    check("consistency: verifies", verify_consistency(old, new, old_root, mth(hashes[:new]), proof))
    check("consistency: a wrong old root fails", not verify_consistency(old, new, bytes(32), root, proof))

    print(f"ok: {n} records, root {root.hex()}, inclusion of seq {inc['seq']} and consistency {old} -> {new} verified")


if __name__ == "__main__":
    main()
