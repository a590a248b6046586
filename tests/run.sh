#!/usr/bin/env bash
# Runs every test of eks-audit-lake: the Rust unit and integration tests, then the
# black-box system tests (the auditlake CLI read back by DuckDB and pyarrow, S3 through
# aws-sdk-s3 against moto_server, Kinesis consumption, the forensic playbook on DuckDB,
# CloudFormation with cfn-lint, checkov and moto, and the arm64 Lambda package).
#
#   bash tests/run.sh                      everything (what CI runs)
#   AUDITLAKE_TEST_PACKAGE=0 bash tests/run.sh   skip the ~7 min arm64 cross build
#
# Builds go to a cache outside the clone ($CARGO_TARGET_DIR, default
# ~/.cache/eks-audit-lake/target) so repeated runs on one machine reuse them; the Python
# tools are installed from PyPI into a venv next to it.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="${AUDITLAKE_CACHE:-$HOME/.cache/eks-audit-lake}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
export CARGO_TERM_COLOR=never
export AUDITLAKE_TEST_PACKAGE="${AUDITLAKE_TEST_PACKAGE:-1}"

echo "== cargo test (dev profile; dependencies at opt-level 2)"
cargo build --locked --workspace --all-targets
cargo test --locked --workspace

echo "== Python test environment"
venv="$cache/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

echo "== system tests (pytest)"
export AUDITLAKE_BIN="$CARGO_TARGET_DIR/debug/auditlake"
"$venv/bin/python" -m pytest tests -ra -p no:cacheprovider "$@"
