#!/usr/bin/env bash
# Bounded fuzzing of every target, as the test command runs it:
#
#   bash fuzz/run.sh                    each target for $AUDITLAKE_FUZZ_SECONDS (default 20)
#
# Needs the nightly toolchain (on these machines) and cargo-fuzz (installed from
# crates.io when missing). Seeds the corpora from the test fixtures (fuzz/seed.py) and
# the checked-in regression inputs; builds into $AUDITLAKE_CACHE/fuzz-target. A crash
# fails the run and leaves its input in fuzz/artifacts/<target>/: add it to
# fuzz/regressions/<target>/, where `cargo test` replays it on stable.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${AUDITLAKE_CACHE:-$HOME/.cache/eks-audit-lake}"
seconds="${AUDITLAKE_FUZZ_SECONDS:-20}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io (about 2 min)"
  cargo install cargo-fuzz --locked
fi
cd "$repo/fuzz"
python3 seed.py corpus
mkdir -p "$cache/fuzz-logs"
for t in decode audit cloudtrail awsauth part_file handler sigma; do
  log="$cache/fuzz-logs/$t.log"
  if ! cargo +nightly fuzz run -s none --target-dir "$cache/fuzz-target" "$t" "corpus/$t" "regressions/$t" \
      -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $t FAILED: the input is in fuzz/artifacts/$t/; add it to fuzz/regressions/$t/"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  echo "fuzz: $t: ${runs:-?} executions in ${seconds} s, ${cov:-cov: ?}, no crash"
done
