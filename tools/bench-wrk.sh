#!/usr/bin/env bash
# Side-by-side HTTP figures with wrk (apt-get install -y wrk), the load generator other
# servers are commonly measured with: writ (release build, fresh data directory) and, when
# PEER_BENCH names a script taking the same arguments (the peer's wrk bench), the peer, in
# one session, alternating at every connection count.
#
#   tools/bench-wrk.sh [duration=10s] [connections=4 ...]
#
# For writ, at each connection count: client_credentials issuance (client_secret_basic,
# EdDSA JWT, a durable ledger event before each answer) and introspection of an active
# token. Prints RESULT lines; ends with `writ verify` of the ledger the run wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
shift || true
connections=("${@:-4}")
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 2; }

cargo build --release --quiet -p writ
writ=target/release/writ
lua=$PWD/tools/wrk/post.lua
data=$(mktemp -d)
port=${WRIT_BENCH_PORT:-18080}
base=http://127.0.0.1:$port
export WRIT_ADMIN_TOKEN=${WRIT_ADMIN_TOKEN:-bench-admin-token-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
$writ serve --data-dir "$data" --listen "127.0.0.1:$port" >"$data.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 100); do
    curl -fs "$base/readyz" >/dev/null && break
    sleep 0.1
done

admin=(-fsS -H "Authorization: Bearer $WRIT_ADMIN_TOKEN" -H 'Content-Type: application/json')
registered=$(curl "${admin[@]}" -d '{"name":"wrk","scopes":["mcp:read"],"grant_types":["client_credentials"]}' "$base/api/v1/agents")
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
client_id=$(field '["agent"]["client_id"]' <<<"$registered")
secret=$(field '["client_secret"]' <<<"$registered")
# writ limits each agent's token requests (600 a minute by default); lift it for the
# measuring agent, or this would measure the limiter.
curl "${admin[@]}" -X PUT -d '{"token_requests_per_minute":4294967295}' "$base/api/v1/agents/$client_id/policy"
BASIC=$(printf '%s:%s' "$client_id" "$secret" | base64 -w0)
export BASIC
issue_body='grant_type=client_credentials&scope=mcp%3Aread'
token=$(curl -fsS -u "$client_id:$secret" -d "$issue_body" "$base/oauth/token" | field '["access_token"]')

echo "# $(date -u +%FT%TZ) $(nproc) cores; $($writ --version); wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'); duration $duration"
run() { # name body path connections
    echo "== writ, $1, $4 connections"
    BODY=$2 wrk -t1 -c"$4" -d"$duration" --timeout 5s -s "$lua" "$base$3" | grep '^RESULT'
}
BODY=$issue_body wrk -t1 -c"${connections[0]}" -d2s -s "$lua" "$base/oauth/token" >/dev/null # warm-up
for c in "${connections[@]}"; do
    run "client_credentials, EdDSA JWT" "$issue_body" /oauth/token "$c"
    run "introspection, active token" "token=$token&token_type_hint=access_token" /oauth/introspect "$c"
    if [ -n "${PEER_BENCH:-}" ]; then
        echo "== peer, $c connections ($PEER_BENCH)"
        bash "$PEER_BENCH" "$duration" "$c"
    fi
done

kill -TERM $server
wait $server || true
trap - EXIT
$writ verify "$data"
rm -rf "$data" "$data.log"
