#!/usr/bin/env python3
"""Seed the fuzz corpora from the test fixtures (standard library only).

    python3 fuzz/seed.py fuzz/corpus

writes fuzz/corpus/<target>/seed-*: the golden Firehose fixture's records (gzip, as the
decode target sees them), their envelopes (plain, for the handler target), every audit
message and CloudTrail event in them, the fixture event as a whole, and aws-auth
templates with usernames. The checked-in regression inputs (fuzz/regressions/) are
passed to the fuzzer as a second corpus by the test command.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "firehose-golden.json"

TEMPLATES = [
    "role:{{AccountID}}:staff:{{SessionName}}",
    "arn:aws:sts::{{AccountID}}:assumed-role/ops/{{SessionName}}",
    "ci:{{AccessKeyID}}",
    "raw/{{SessionNameRaw}}",
    "system:node:{{EC2PrivateDNSName}}",
]
USERNAMES = [
    "role:111122223333:staff:alice-example.com",
    "arn:aws:sts::111122223333:assumed-role/ops/bob",
    "ci:ASIAEXAMPLEKEY0001",
    "raw/carol@example.com",
    "role:12345678901\u00e9:staff:x",
]


def write(out: pathlib.Path, target: str, data: bytes) -> None:
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)


def main(out: pathlib.Path) -> None:
    event = json.loads(FIXTURE.read_text())
    write(out, "handler", FIXTURE.read_bytes())
    for rec in event["records"]:
        raw = base64.b64decode(rec["data"])
        write(out, "decode", raw)
        try:
            plain = gzip.decompress(raw)
        except Exception:  # the fixture's corrupt and non-gzip records
            continue
        write(out, "handler", plain)
        try:
            env = json.loads(plain)
        except ValueError:
            continue
        for ev in env.get("logEvents", []) if isinstance(env, dict) else []:
            msg = ev.get("message", "").encode()
            group = env.get("logGroup", "")
            write(out, "audit" if group.startswith("/aws/eks/") else "cloudtrail", msg)
    for t in TEMPLATES:
        write(out, "awsauth", ("\n".join([t, *USERNAMES])).encode())
    # the rule pack: its rule files (sigma) and its test events (audit, so the rules'
    # body walks are reached from the start)
    rules = ROOT / "schemas" / "rules"
    for f in sorted(rules.glob("*.yml")):
        write(out, "sigma", f.read_bytes())
    for f in sorted((rules / "tests").glob("*.json")):
        t = json.loads(f.read_text())
        # aws/cloudtrail rules' events are EKS API calls: the cloudtrail target
        target = "cloudtrail" if f.name.startswith("eks_api_") else "audit"
        for ev in t.get("positive", []) + t.get("negative", []):
            write(out, target, json.dumps(ev, separators=(",", ":")).encode())
    # every EKS API call shape (tests/fixtures/cloudtrail_eks), for the cloudtrail target
    for f in sorted((ROOT / "tests" / "fixtures" / "cloudtrail_eks").rglob("*.json")):
        write(out, "cloudtrail", json.dumps(json.loads(f.read_text()), separators=(",", ":")).encode())
    # part_file: its seeds are the real lake files under regressions/part_file (an
    # ingest file, a compacted file), which the run passes as a second corpus
    (out / "part_file").mkdir(parents=True, exist_ok=True)
    n = sum(1 for _ in out.rglob("seed-*"))
    print(f"seed.py: {n} seed inputs under {out}")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus"))
