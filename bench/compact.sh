#!/usr/bin/env bash
# Compaction on a day of the benchmark's batch mix (issue 14; not a test: it prints
# figures):
#
#   bash bench/compact.sh [BATCHES]        (default 50)
#
# Ingests BATCHES 3 MB batches into a local lake (every 25th delivered twice), then
# measures: files and bytes before/after, Parquet against gzip NDJSON after, the
# compaction's wall time, MB/s of Parquet in and peak RSS (GNU time), and the bytes
# DuckDB reads (and its time) for each playbook query before and after.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
batches="${1:-50}"
cache="${AUDITLAKE_CACHE:-$HOME/.cache/eks-audit-lake}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
cargo build --release --locked -p auditlake --bin bench --bin auditlake
venv="$cache/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
bin="$CARGO_TARGET_DIR/release"
work="$(mktemp -d /tmp/auditlake-compact-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
lake="$work/lake"

sizes() { find "$lake/$1" -name '*.parquet' -printf '%s\n' | awk '{n++; s+=$1} END {printf "%d files, %.1f MB", n, s/1e6}'; }

echo "== ingest: $batches batches of 3 MB"
day_json="$("$bin/bench" --make-day "$batches" "$lake")"
echo "$day_json"
day="$(echo "$day_json" | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["day"])')"
gz="$(echo "$day_json" | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["gzip_ndjson_bytes"])')"
echo "before: eks_audit $(sizes eks_audit)"
pq_in="$(find "$lake/eks_audit" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s}')"
PYTHONHASHSEED=0 "$venv/bin/python" bench/playbook_reads.py "$lake" "$day" > "$work/before.json"

echo "== compact (release, one process; GNU time: wall s, peak RSS KB)"
/usr/bin/time -f "%e %M" -o "$work/time" "$bin/auditlake" compact --lake "$lake" --dt "$day" 2> "$work/progress"
tail -n 3 "$work/progress"
read -r secs rss < "$work/time"
echo "after:  eks_audit $(sizes eks_audit)"
pq_out="$(find "$lake/eks_audit" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s}')"
awk -v s="$secs" -v r="$rss" -v i="$pq_in" -v o="$pq_out" -v g="$gz" 'BEGIN {
  printf "compaction: %.1f s, %.1f MB/s of Parquet in, peak RSS %.0f MB\n", s, i/1e6/s, r/1024
  printf "eks_audit Parquet after / gzip NDJSON of the same events: %.0f KB / %.0f KB = %.2fx\n", o/1e3, g/1e3, o/g }'
PYTHONHASHSEED=0 "$venv/bin/python" bench/playbook_reads.py "$lake" "$day" > "$work/after.json"
"$venv/bin/python" - "$work/before.json" "$work/after.json" <<'PY'
import json, sys
b, a = (json.load(open(p)) for p in sys.argv[1:3])
print(f"{'playbook query':<40} {'MB read before':>15} {'after':>8} {'s before':>9} {'after':>7}  rows before/after (distinct)")
for q in b:
    # the same answers; before, events delivered twice are counted twice
    assert b[q]["answer"] == a[q]["answer"], (q, b[q], a[q])
    print(f"{q:<40} {b[q]['bytes_read']/1e6:15.1f} {a[q]['bytes_read']/1e6:8.1f} {b[q]['seconds']:9.2f} {a[q]['seconds']:7.2f}  {b[q]['rows']}/{a[q]['rows']} ({a[q]['distinct_rows']})")
PY
