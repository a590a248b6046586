#!/usr/bin/env bash
# Runs every test of eks-audit-lake: the Rust unit and integration tests, then the
# black-box system tests (the auditlake CLI read back by DuckDB and pyarrow, S3 through
# aws-sdk-s3 against moto_server, Kinesis consumption, the forensic playbook on DuckDB,
# CloudFormation with cfn-lint, checkov and moto, and the arm64 Lambda package).
#
#   bash tests/run.sh                            everything (what CI runs: .ci/run)
#   AUDITLAKE_TEST_PACKAGE=0 bash tests/run.sh   skip the arm64 cross build (~10 min cold)
#   AUDITLAKE_FUZZ_SECONDS=60 bash tests/run.sh  fuzz each target longer (default 20 s)
#
# One build for everyone: this script and the README's `cargo run` both build into the
# repository's ./target (dev profile, dependencies at opt-level 2). On a machine that has
# run the tests before, ./target is made a link to a cache outside the clone
# ($AUDITLAKE_CACHE/target, default ~/.cache/eks-audit-lake/target), so a fresh clone
# (CI) starts warm. The Python tools go to a venv next to that cache.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="${AUDITLAKE_CACHE:-$HOME/.cache/eks-audit-lake}"
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  if [ ! -e target ]; then
    mkdir -p "$cache/target"
    ln -s "$cache/target" target
  fi
  export CARGO_TARGET_DIR="$repo/target"
fi
export CARGO_TERM_COLOR=never
export AUDITLAKE_TEST_PACKAGE="${AUDITLAKE_TEST_PACKAGE:-1}"
step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "cargo build: the workspace, dev profile (15-25 min on two cores when cold)"
cargo build --locked --workspace --all-targets
step "cargo test"
cargo test --locked --workspace

step "fuzzing: 7 targets, ${AUDITLAKE_FUZZ_SECONDS:-20} s each (nightly cargo-fuzz build of the pure crates, ~8 min when cold)"
bash fuzz/run.sh

step "Python test tools into $cache/venv (DuckDB, pyarrow, moto, cfn-lint, checkov: 1-2 min when new)"
venv="$cache/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# progress per package (no bars); an up-to-date venv prints only what it already has
"$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -r tests/requirements.txt \
  | grep -Ev '^Requirement already satisfied' || true

if [ "$AUDITLAKE_TEST_PACKAGE" = "1" ]; then
  step "arm64 Lambda package: cross-building bootstrap (release, ~10 min when cold; the package test then checks it)"
  bash infra/package.sh
fi

step "system tests (pytest)"
export AUDITLAKE_BIN="$CARGO_TARGET_DIR/debug/auditlake"
"$venv/bin/python" -m pytest tests -ra -p no:cacheprovider "$@"
