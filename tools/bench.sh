#!/usr/bin/env bash
# Side-by-side HTTP figures: writ (release build, fresh data directory) and, when
# PEER_TOKEN_URL is set, another OAuth server under the same load, in one session.
#
#   tools/bench.sh [duration=10s] [connections=4 ...]
#
# With WRIT_STORE=postgres://... (an empty database) the server keeps its records there.
#
# For every connection count: writ's issue, exchange, introspect and operations scenarios, then the
# peer's issue (its default tokens), issue with PEER_JWT_PARAM (e.g. resource=urn:peer:jwt,
# for JWT access tokens) and introspect. Peer settings: PEER_TOKEN_URL,
# PEER_INTROSPECTION_URL, PEER_CLIENT_ID, PEER_CLIENT_SECRET, PEER_SCOPE, PEER_JWT_PARAM.
# Ends with `writ verify` of the ledger the run wrote. Prints RESULT lines (writ-bench's).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
shift || true
connections=("${@:-4}")

cargo build --release --quiet -p writ -p writ-tools
writ=target/release/writ
bench=target/release/writ-bench
data=$(mktemp -d)
port=${WRIT_BENCH_PORT:-18080}
export WRIT_ADMIN_TOKEN=${WRIT_ADMIN_TOKEN:-bench-admin-token-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
$writ serve --data-dir "$data" --listen "127.0.0.1:$port" >"$data.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
done

echo "# $(date -u +%FT%TZ) $(nproc) cores; $($writ --version); duration $duration"
for c in "${connections[@]}"; do
    echo "## writ, $c connections"
    $bench --writ-url "http://127.0.0.1:$port" --connections "$c" --duration "$duration" \
        --scenario issue,exchange,introspect,operations 2>/dev/null | grep '^RESULT'
    if [ -n "${PEER_TOKEN_URL:-}" ]; then
        echo "## peer, $c connections"
        peer=(--token-url "$PEER_TOKEN_URL" --client-id "$PEER_CLIENT_ID"
              --client-secret "$PEER_CLIENT_SECRET" --scope "${PEER_SCOPE:-}"
              --connections "$c" --duration "$duration")
        $bench "${peer[@]}" --scenario issue 2>/dev/null | grep '^RESULT' | sed 's/scenario=issue/scenario=issue-peer-default/'
        if [ -n "${PEER_JWT_PARAM:-}" ]; then
            $bench "${peer[@]}" --scenario issue --token-param "$PEER_JWT_PARAM" 2>/dev/null \
                | grep '^RESULT' | sed 's/scenario=issue/scenario=issue-peer-jwt/'
        fi
        if [ -n "${PEER_INTROSPECTION_URL:-}" ]; then
            $bench "${peer[@]}" --introspection-url "$PEER_INTROSPECTION_URL" --scenario introspect \
                2>/dev/null | grep '^RESULT' | sed 's/scenario=introspect/scenario=introspect-peer/'
        fi
    fi
done

kill -TERM $server
wait $server || true
trap - EXIT
if [ -n "${WRIT_STORE:-}" ] && [ "$WRIT_STORE" != embedded ]; then
    $writ verify --store "$WRIT_STORE"
else
    $writ verify "$data"
fi
rm -rf "$data" "$data.log"
