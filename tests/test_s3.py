"""The lake on S3, through the real aws-sdk-s3 client, against moto_server on loopback."""
from __future__ import annotations

import io
import json

import pyarrow.parquet as pq

import events as E
from support import ROOT, run

FIXTURE = ROOT / "tests" / "fixtures" / "firehose-golden.json"
A = "111122223333"


def objects(s3, bucket, prefix=""):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def test_invoke_writes_the_lake_to_s3_and_it_reads_back(auditlake, moto):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="audit-lake")
    r = run([auditlake, "invoke", "--event", FIXTURE, "--lake", "s3://audit-lake/prod/lake"], env=moto.env())
    resp = json.loads(r.stdout)
    assert [x["result"] for x in resp["records"]].count("Ok") == 4
    keys = objects(s3, "audit-lake")
    parquet = [k for k in keys if k.endswith(".parquet")]
    # eks_audit and sts_sessions, and the findings the fixture's events raise
    assert len([k for k in parquet if "/findings/" not in k]) == 5
    assert len([k for k in parquet if k.startswith("prod/lake/findings/dt=")]) >= 1
    assert all(k.startswith("prod/lake/") for k in keys)
    assert "prod/lake/session_index/by_key/ASIAEXAMPLETEMPKEY03.json" in keys
    east = next(k for k in parquet if "/eks_audit/dt=2024-11-26/111122223333/prod-east/" in k)
    table = pq.read_table(io.BytesIO(s3.get_object(Bucket="audit-lake", Key=east)["Body"].read()))
    rows = {r["audit_id"]: r for r in table.to_pylist() if r["parse_status"] == "ok"}
    rb = rows["7f3c2a1e-5b8d-4c1a-9e2f-0a1b2c3d4e5f"]
    assert (rb["principal_type"], rb["principal_name"], rb["attribution_status"]) == ("identity_center_user", "alice@example.com", "resolved")
    # the same batch again (a Firehose retry) overwrites the same keys
    run([auditlake, "invoke", "--event", FIXTURE, "--lake", "s3://audit-lake/prod/lake"], env=moto.env())
    assert objects(s3, "audit-lake") == keys


def test_sessions_indexed_on_s3_attribute_a_later_invocation(auditlake, moto, tmp_path):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="audit-lake")
    key = "ASIAS3LATER00000001"
    trail = E.trail_envelope([E.assume_role("2024-11-26T13:00:00Z", A, E.iam_user(A, "jdoe"), f"arn:aws:iam::{A}:role/ops", "jdoe", key)])
    audit = E.audit_envelope(A, "prod", [E.audit_event("s3-1", "2024-11-26T13:30:00Z", f"arn:aws:sts::{A}:assumed-role/ops/jdoe",
                                                       E.assumed_extra(A, "ops", "jdoe", key))])
    for i, payload in enumerate([trail, audit]):
        p = tmp_path / f"e{i}.json"
        p.write_text(json.dumps(E.firehose_event([E.gz(payload)])))
        run([auditlake, "invoke", "--event", p, "--lake", "s3://audit-lake"], env=moto.env())
    k = next(k for k in objects(s3, "audit-lake", "eks_audit/"))
    row = pq.read_table(io.BytesIO(s3.get_object(Bucket="audit-lake", Key=k)["Body"].read())).to_pylist()[0]
    assert (row["principal_name"], row["attribution_status"]) == ("jdoe", "resolved")


def test_aws_auth_mapping_read_from_s3(auditlake, moto, tmp_path):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="cfg")
    s3.create_bucket(Bucket="audit-lake")
    s3.put_object(Bucket="cfg", Key="aws-auth.yaml", Body=b"mapRoles: |\n  - rolearn: arn:aws:iam::111122223333:role/staff\n"
                  b"    username: role:{{AccountID}}:staff:{{SessionName}}\n")
    trail = E.trail_envelope([E.assume_role("2024-11-26T13:00:00Z", A, E.iam_user(A, "henry"), f"arn:aws:iam::{A}:role/staff",
                                            "henry@example.com", "ASIALEGACYS3000001")])
    audit = E.audit_envelope(A, "old", [E.audit_event("legacy-s3", "2024-11-26T13:30:00Z", "role:111122223333:staff:henry-example.com")])
    p = tmp_path / "e.json"
    p.write_text(json.dumps(E.firehose_event([E.gz(trail), E.gz(audit)])))
    env = dict(moto.env(), AUDITLAKE_AWS_AUTH="s3://cfg/aws-auth.yaml")
    run([auditlake, "invoke", "--event", p, "--lake", "s3://audit-lake"], env=env)
    k = next(k for k in objects(s3, "audit-lake", "eks_audit/"))
    row = pq.read_table(io.BytesIO(s3.get_object(Bucket="audit-lake", Key=k)["Body"].read())).to_pylist()[0]
    assert (row["principal_name"], row["attribution_method"], row["attribution_status"]) == ("henry", "session_name", "resolved")
    # a missing mapping object fails start with its name
    env = dict(moto.env(), AUDITLAKE_AWS_AUTH="s3://cfg/missing.yaml")
    r = run([auditlake, "invoke", "--event", p, "--lake", "s3://audit-lake"], env=env, check=False)
    assert r.returncode == 2 and b"s3://cfg/missing.yaml" in r.stderr


def test_a_failed_write_fails_the_invocation_and_reports_nothing_written(auditlake, moto):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="audit-lake")
    env = moto.env()
    moto.stop()
    r = run([auditlake, "invoke", "--event", FIXTURE, "--lake", "s3://audit-lake/lake"], env=env, check=False, timeout=300)
    assert r.returncode == 1, r.stderr
    assert r.stdout == b"", "no Firehose response may be reported when the batch was not written"
    assert b"s3://audit-lake/lake/" in r.stderr
    # a missing bucket is a write failure too
    moto.start()
    r = run([auditlake, "invoke", "--event", FIXTURE, "--lake", "s3://no-such-bucket"], env=moto.env(), check=False, timeout=300)
    assert r.returncode == 1 and r.stdout == b""
    assert b"NoSuchBucket" in r.stderr or b"does not exist" in r.stderr


def _emf(stderr: bytes) -> dict:
    line = next(l for l in stderr.decode().splitlines() if l.startswith("{") and '"_aws"' in l)
    return json.loads(line)


def test_an_indexed_session_is_never_replaced_on_s3(auditlake, moto, tmp_path):
    """S3's conditional write (If-None-Match: *) through aws-sdk-s3: a second, different
    record for an indexed key (even from the trusted trail) leaves the index object as
    it was, is counted, and the key keeps naming the first person."""
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="audit-lake")
    key = "ASIAS3KEEP00000001"
    role = f"arn:aws:iam::{A}:role/ops"
    real = E.assume_role("2024-11-26T13:00:00Z", A, E.iam_user(A, "jdoe"), role, "jdoe", key, event_id="real-1")
    forged = E.assume_role("2024-11-26T13:05:00Z", A, E.iam_user(A, "mallory"), role, "jdoe", key, event_id="other-1")
    audit = E.audit_envelope(A, "prod", [E.audit_event("keep-1", "2024-11-26T13:30:00Z", f"arn:aws:sts::{A}:assumed-role/ops/jdoe",
                                                       E.assumed_extra(A, "ops", "jdoe", key))])
    outs = []
    for i, payloads in enumerate([[E.trail_envelope([real])], [E.trail_envelope([forged, real])], [audit]]):
        p = tmp_path / f"e{i}.json"
        p.write_text(json.dumps(E.firehose_event([E.gz(x) for x in payloads])))
        outs.append(run([auditlake, "invoke", "--event", p, "--lake", "s3://audit-lake"], env=moto.env()))
    assert _emf(outs[1].stderr)["sts_conflicts"] == 1
    held = json.loads(s3.get_object(Bucket="audit-lake", Key=f"session_index/by_key/{key}.json")["Body"].read())
    assert (held["event_id"], held["caller_user_name"]) == ("real-1", "jdoe")
    k = next(k for k in objects(s3, "audit-lake", "eks_audit/"))
    row = pq.read_table(io.BytesIO(s3.get_object(Bucket="audit-lake", Key=k)["Body"].read())).to_pylist()[0]
    assert (row["principal_name"], row["attribution_status"]) == ("jdoe", "resolved")
