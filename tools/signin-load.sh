#!/usr/bin/env bash
# The resident memory of `writ serve` while N sign-ins with wrong passwords arrive at once,
# and how they were answered. Loopback only; a fresh data directory, removed at the end.
#
#   tools/signin-load.sh [N] [extra writ serve flags...]
#
# N (default 128, at most 1024) concurrent POST /login for one person, each a wrong
# password. Prints the server's resident memory before (VmRSS) and its high-water mark
# after (VmHWM), and the count of each status. WRIT_BIN picks the binary (default
# target/release/writ).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${WRIT_BIN:-target/release/writ}
n=${1:-128}
shift || true
if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 1024 ]; then
    echo "N must be 1 to 1024" >&2
    exit 2
fi
work=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

admin="wrt_admin_$(head -c 24 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')0123456789"
WRIT_ADMIN_TOKEN=$admin "$bin" serve --data-dir "$work/data" --listen 127.0.0.1:0 "$@" \
    >"$work/out" 2>"$work/err" &
server=$!
base=
for _ in $(seq 600); do
    base=$(sed -n 's/^writ listening on //p' "$work/out" | head -1)
    [ -n "$base" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
    sleep 0.05
done
[ -n "$base" ] || { echo "writ serve did not start" >&2; exit 1; }

ada=$(curl -sf "$base/api/v1/users" -H "authorization: Bearer $admin" \
    -H 'content-type: application/json' -d '{"email":"ada@example.com"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sf -X PUT "$base/api/v1/users/$ada/password" -H "authorization: Bearer $admin" \
    -H 'content-type: application/json' -d '{"password":"correct horse battery staple"}'

before=$(awk '/^VmRSS/ {print $2}' "/proc/$server/status")
pids=()
for i in $(seq "$n"); do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 60 "$base/login" \
        -d "email=ada%40example.com&password=wrong-$i&return_to=%2Faccount" >>"$work/codes" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || true; done
peak=$(awk '/^VmHWM/ {print $2}' "/proc/$server/status")

echo "sign-ins at once: $n"
echo "resident before: $((before / 1024)) MiB; high-water mark after: $((peak / 1024)) MiB"
echo "answers (count status):"
sort "$work/codes" | uniq -c
