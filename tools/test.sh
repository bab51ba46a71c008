#!/usr/bin/env bash
# writ's whole test suite: the one command the README names and CI runs.
# Sets up what the tests need beyond cargo, idempotently, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# The ledger spec's reference verifier (schemas/LEDGER.md) is run by the tests in Python
# with only a BLAKE3 library, to prove the spec alone is enough to verify an export.
if ! python3 -c 'import blake3' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'blake3==1.0.11'
fi
# Issued tokens are verified against the JWKS with an independent JOSE library (PyJWT on
# cryptography), not the one writ signs with.
if ! python3 -c 'import jwt, cryptography' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'PyJWT==2.15.1' 'cryptography==50.0.2'
fi

# schemas/openapi.yaml is checked against the OpenAPI 3.1 specification, and the server's
# answers against its schemas, by a validator that is not ours.
if ! python3 -c 'import openapi_spec_validator, openapi_schema_validator, yaml' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'openapi-spec-validator==0.9.0'
fi

# The whole API is fuzzed from schemas/openapi.yaml by schemathesis (tests/e2e/fuzz.rs).
# Pinned, so a fixed seed draws the same cases.
if [ "$(python3 -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" != 4.32.5 ]; then
    python3 -m pip install --quiet --disable-pip-version-check 'schemathesis==4.32.5'
fi

# The MCP tool-call gateway is tested against a real MCP server on the Python SDK
# (tools/mcp_server/server.py).
if ! python3 -c 'import mcp' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'mcp==1.23.3'
fi

# The connection tests' upstream OAuth provider is node-oidc-provider (tools/upstream/),
# installed from its lock file into tools/upstream/node_modules.
if [ ! -d tools/upstream/node_modules/oidc-provider ]; then
    if ! command -v npm >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
    (cd tools/upstream && npm ci --silent --no-audit --no-fund)
fi

# Third-party OAuth clients drive the interactive flow (tests/e2e/clients.rs): openid-client
# and the MCP TypeScript SDK's client auth (tools/clients/), from their lock file.
if [ ! -d tools/clients/node_modules/openid-client ] ||
    [ ! -d tools/clients/node_modules/@modelcontextprotocol/sdk ]; then
    (cd tools/clients && npm ci --silent --no-audit --no-fund)
fi

# The browser test (tests/e2e/browser.rs) drives Debian's Chromium with playwright-core,
# installed from its lock file into tools/browser/node_modules (it downloads no browser).
if ! command -v chromium >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d tools/browser/node_modules/playwright-core ]; then
    if ! command -v npm >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
    (cd tools/browser && npm ci --silent --no-audit --no-fund)
fi

# The PostgreSQL backend's tests make a scratch database each on the server
# WRIT_TEST_POSTGRES names (default: 127.0.0.1:5432, user postgres). Unless it names another
# server, make sure the local one is installed and running (Debian's cluster tools; both
# steps do nothing when it already is), and that the postgres user can connect over TCP.
if [ -z "${WRIT_TEST_POSTGRES:-}" ]; then
    if ! command -v pg_ctlcluster >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        # The first cluster on this machine (normally "15 main"); start waits until it is up.
        read -r pg_version pg_cluster _ < <(pg_lsclusters --no-header)
        pg_ctlcluster "$pg_version" "$pg_cluster" start
    fi
    if ! psql -w -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
        # A fresh install asks for a password over TCP: give the postgres user one, set
        # through the local socket, where the postgres system user needs none.
        su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
        export WRIT_TEST_POSTGRES='postgres://postgres:postgres@127.0.0.1:5432/postgres'
    fi
fi

cargo test --workspace "$@"

# The end-to-end suite again with every ledger in PostgreSQL: the kit (tests/e2e/kit.rs)
# gives each data directory a database of its own, named after this run and dropped
# below. Skipped here, because they run exactly as in the first pass (they choose their
# stores themselves, or are about the embedded data directory and say so with
# `about_the_embedded_store`):
#   tamper::, crash::                  segment files altered, the file writer killed
#   bad_input::a_truncated_snapshot..  `writ replay` reads snapshots beside segments only
#   ledger::writ_verify_holds_an_ex..  forks a ledger by copying its data directory
#   exchange::a_chained_operation_i..  `writ audit` reads an embedded data directory only
#   erasure::an_erased_person_leav..  scans the embedded data directory's files for plaintext
#   session_grants::no_upstream_tok..  scans the embedded data directory's files for upstream tokens
#   postgres::, m2m::, nodes::         each test chooses its stores (m2m runs on both)
if [ "$#" -eq 0 ]; then
    export WRIT_E2E_STORE=postgres
    export WRIT_E2E_RUN="r$$"
    pg_server=${WRIT_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}
    drop_run_databases() {
        psql -w -q -At "$pg_server" -c \
            "SELECT datname FROM pg_database WHERE datname LIKE 'writ_e2e_${WRIT_E2E_RUN}_%'" |
            while read -r db; do
                psql -w -q "$pg_server" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
            done
    }
    trap drop_run_databases EXIT
    cargo test -p writ --test e2e -- \
        --skip tamper:: --skip crash:: --skip postgres:: --skip m2m:: --skip nodes:: \
        --skip bad_input::a_truncated_snapshot_is_ignored_with_a_warning \
        --skip ledger::writ_verify_holds_an_export_to_its_checkpoint_and_catches_a_rewrite_and_a_fork \
        --skip exchange::a_chained_operation_is_told_offline_as_the_person_s_through_each_agent_in_turn \
        --skip erasure::an_erased_person_leaves_no_plaintext_anywhere_and_the_chain_still_verifies \
        --skip session_grants::no_upstream_token_is_in_the_clear_in_the_ledger_snapshots_or_log
else
    echo "tools/test.sh: arguments given; the end-to-end pass on PostgreSQL runs without arguments only"
fi
