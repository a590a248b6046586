#!/usr/bin/env bash
# The benchmark, in one command (not part of the tests: it prints figures, it passes
# nothing and fails nothing):
#
#   bash bench/run.sh [--repeats N]     wall clock (MB/s, RSS, cold start, size, both Python peers)
#   bash bench/run.sh --instructions    callgrind: instructions per MB per stage (repeatable)
#
# Builds the release binaries, installs the Python peers' dependencies (orjson, pyarrow)
# into a venv, and runs auditlake/src/bin/bench.rs, which runs every implementation on
# the same generated Firehose batches in the same run. Results: BENCHMARKS.md.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="${AUDITLAKE_CACHE:-$HOME/.cache/eks-audit-lake}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
cargo build --release --locked -p auditlake --bin bench --bin auditlake
venv="$cache/bench-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r bench/peer/requirements.txt
exec "$CARGO_TARGET_DIR/release/bench" --python "$venv/bin/python" "$@"
