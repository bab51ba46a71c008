#!/usr/bin/env bash
# Issuance and operation throughput with the ledger on PostgreSQL, with one node and with
# two nodes over one ledger, beside the embedded store under the same load: the README's
# multi-node figures.
#
#   tools/bench-postgres.sh [duration=10s] [connections=16]
#
# Each configuration starts on a fresh ledger (release build): embedded (a data
# directory); PostgreSQL, one node; PostgreSQL, two nodes sharing one keys folder, the
# connections spread over both (writ-bench --also-writ-url). The databases are scratch
# ones on the server WRIT_TEST_POSTGRES names (default: the local one as tools/test.sh
# sets it up), dropped at the end. Every ledger is verified after its run. Prints
# writ-bench's RESULT lines, each after a `## configuration` line.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
connections=${2:-16}
server_url=${WRIT_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}
port=${WRIT_BENCH_PORT:-18080}

cargo build --release --quiet -p writ -p writ-tools
writ=target/release/writ
bench=target/release/writ-bench
work=$(mktemp -d)
pids=()
databases=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for db in "${databases[@]}"; do
        psql -q "$server_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
export WRIT_ADMIN_TOKEN=${WRIT_ADMIN_TOKEN:-bench-admin-token-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}

# scratch_database NAME: a fresh database, dropped at exit; sets $db_url to its URL.
scratch_database() {
    local name="writ_bench_$$_$1"
    psql -q "$server_url" -c "CREATE DATABASE $name" >/dev/null
    databases+=("$name")
    db_url="${server_url%/*}/$name"
}

# start_node NAME STORE KEYS PORT: a node in the background, ready when this returns.
start_node() {
    $writ serve --data-dir "$work/$1" --store "$2" --keys-dir "$work/$3" \
        --listen "127.0.0.1:$4" --issuer "http://writ.bench" >"$work/$1.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do
        curl -fs "http://127.0.0.1:$4/readyz" >/dev/null && return 0
        sleep 0.1
    done
    echo "node $1 did not become ready; its log:" >&2
    cat "$work/$1.log" >&2
    return 1
}

stop_nodes() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}

# writ-bench's own messages (quoting any non-2xx answer) go to WRIT_BENCH_STDERR.
run_bench() {
    $bench --writ-url "http://127.0.0.1:$port" "$@" --connections "$connections" \
        --duration "$duration" --scenario issue,operations --allow-errors \
        2>>"${WRIT_BENCH_STDERR:-/dev/null}" | grep '^RESULT'
}

echo "# $(date -u +%FT%TZ) $(nproc) cores; $($writ --version); duration $duration, $connections connections"

echo "## embedded, one node"
start_node embedded embedded keys-embedded "$port"
run_bench
stop_nodes
$writ verify "$work/embedded" | head -1

echo "## postgres, one node"
scratch_database one
one=$db_url
start_node pg-one "$one" keys-one "$port"
run_bench
stop_nodes
$writ verify --store "$one" | head -1

echo "## postgres, two nodes"
scratch_database two
two=$db_url
start_node pg-a "$two" keys-two "$port"
start_node pg-b "$two" keys-two "$((port + 1))"
run_bench --also-writ-url "http://127.0.0.1:$((port + 1))"
stop_nodes
$writ verify --store "$two" | head -1
