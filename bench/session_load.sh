#!/usr/bin/env bash
# Load run of the DynamoDB session index (not a test: it prints request counts):
#
#   bash bench/session_load.sh [SESSIONS] [LOOKUPS]     (defaults 200000 and 50000)
#   STORES=s3 bash bench/session_load.sh 20000 5000      (one store only: dynamodb or s3)
#
# Starts moto_server (from the test command's venv), creates a table with the central
# stack's key schema and a bucket, and runs auditlake/src/bin/session_load.rs: SESSIONS CloudTrail
# AssumeRole records indexed through the real handler, then LOOKUPS audit events whose
# keys a cold instance looks up; once with the lake's S3 index, once with DynamoDB. Results: BENCHMARKS.md and docs/deploy.md (cost).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="${AUDITLAKE_CACHE:-$HOME/.cache/eks-audit-lake}"
venv="$cache/venv"
[ -x "$venv/bin/python" ] || { echo "run bash tests/run.sh once first (it makes $venv)" >&2; exit 2; }
cargo build --locked -p auditlake --bin session-load
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/python" -m moto.server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null || true' EXIT
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
for _ in $(seq 50); do curl -fs "$AWS_ENDPOINT_URL/moto-api/" >/dev/null && break; sleep 0.2; done
"$venv/bin/python" - <<'PY'
import boto3, os
ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket="load-lake")
ddb.create_table(TableName="eks-audit-lake-sessions", BillingMode="PAY_PER_REQUEST",
                 KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                 AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}])
PY
stores=()
case "${STORES:-dynamodb s3}" in *dynamodb*) stores+=(--table eks-audit-lake-sessions) ;; esac
case "${STORES:-dynamodb s3}" in *s3*) stores+=(--bucket load-lake) ;; esac
"${CARGO_TARGET_DIR:-target}/debug/session-load" "${stores[@]}" \
  --sessions "${1:-200000}" --lookups "${2:-50000}"
