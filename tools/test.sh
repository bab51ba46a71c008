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

cargo test --workspace "$@"
