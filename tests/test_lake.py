"""The lake as users see it: `auditlake` runs, independent readers (DuckDB, pyarrow) read
what it wrote, and the Athena view runs on DuckDB."""
from __future__ import annotations

import gzip
import json
import re
import pathlib

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import events as E
import lakesql
from support import ROOT, run

FIXTURES = ROOT / "tests" / "fixtures"
A, B, C = "111122223333", "444455556666", "777788889999"


def invoke(auditlake, event: dict | pathlib.Path, lake, tmp_path, env=None, check=True):
    if isinstance(event, dict):
        p = tmp_path / f"event-{len(list(tmp_path.glob('event-*')))}.json"
        p.write_text(json.dumps(event))
        event = p
    return run([auditlake, "invoke", "--event", event, "--lake", lake], env=env, check=check)


# ---- issue 2: the Firehose handler end to end -----------------------------------------

def test_invoke_golden_event_response_and_lake(auditlake, tmp_path):
    lake = tmp_path / "lake"
    ev = json.loads((FIXTURES / "firehose-golden.json").read_text())
    names = json.loads((FIXTURES / "firehose-golden.names.json").read_text())
    r = invoke(auditlake, FIXTURES / "firehose-golden.json", lake, tmp_path)
    resp = json.loads(r.stdout)
    got = {n: rec["result"] for n, rec in zip(names, resp["records"])}
    assert got == {
        "ok-audit": "Ok", "control": "Dropped", "not-gzip": "ProcessingFailed", "truncated-gzip": "ProcessingFailed",
        "corrupt-gzip": "ProcessingFailed", "not-json": "ProcessingFailed", "no-owner": "ProcessingFailed",
        "multi-member": "Ok", "cloudtrail": "Ok", "hostile": "Ok",
    }
    for rec, inp in zip(resp["records"], ev["records"]):
        assert rec["recordId"] == inp["recordId"]
        assert rec["data"] == ("" if rec["result"] == "Dropped" else inp["data"])
    # counts on stderr as one EMF line
    emf = json.loads([l for l in r.stderr.decode().splitlines() if l.startswith("{")][-1])
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "EksAuditLake"
    assert (emf["records_in"], emf["records_ok"], emf["records_dropped"], emf["records_failed"]) == (10, 4, 1, 5)
    assert (emf["events_written"], emf["truncated"], emf["invalid"], emf["skipped"]) == (7, 1, 1, 2)

    con = lakesql.connect(lake)
    rows = lakesql.rows(con, "SELECT * FROM eks_audit WHERE parse_status = 'ok' AND cluster = 'prod-east' ORDER BY event_time")
    assert [r["audit_id"] for r in rows] == [
        "0e6d1c55-94aa-4e0f-8e0c-b0f7d0a3c2d4", "7f3c2a1e-5b8d-4c1a-9e2f-0a1b2c3d4e5f",
        "0b6a8d1e-2c3f-4a5b-9c8d-7e6f5a4b3c2d", "aa11bb22-0000-4000-8000-000000000001"]
    rb = rows[1]
    assert rb["account_id"] == A and isinstance(rb["account_id"], str)
    assert rb["dt"] == "2024-11-26"
    assert rb["principal_type"] == "identity_center_user" and rb["principal_name"] == "alice@example.com"
    assert rb["source_ip"] == "198.51.100.24" and rb["source_ips"] == ["10.1.2.3", "198.51.100.24"]
    assert rb["user_extra"]["sessionName"] == ["alice@example.com"]
    assert rb["annotations"]["authorization.k8s.io/decision"] == "allow"
    assert json.loads(rb["request_object"])["roleRef"]["name"] == "edit"
    assert str(rb["event_time"]).startswith("2024-11-26 13:07:09.118")
    assert rows[3]["dt"] == "2024-11-27"
    kept = lakesql.rows(con, "SELECT parse_status, raw_message, audit_id FROM eks_audit WHERE parse_status <> 'ok' ORDER BY 1")
    assert [(k["parse_status"], k["audit_id"]) for k in kept] == [("invalid", None), ("truncated", "7f3c2a1e-5b8d-4c1a-9e2f-0a1b2c3d4e5f")]
    bad = lakesql.rows(con, "SELECT account_id, cluster, log_group FROM eks_audit WHERE cluster = '_invalid_'")
    assert bad == [{"account_id": "12345", "cluster": "_invalid_", "log_group": "/aws/eks/../../etc/cluster"}]
    assert not any(".." in str(p.relative_to(lake)) for p in lake.rglob("*"))


def test_parquet_types_and_layout_with_pyarrow(auditlake, tmp_path):
    lake = tmp_path / "lake"
    invoke(auditlake, FIXTURES / "firehose-golden.json", lake, tmp_path)
    files = sorted((lake / "eks_audit").rglob("*.parquet"))
    assert [str(f.relative_to(lake)).rsplit("/", 1)[0] for f in files] == [
        "eks_audit/dt=2024-11-26/111122223333/prod-east", "eks_audit/dt=2024-11-26/111122223333/prod-west",
        "eks_audit/dt=2024-11-26/_invalid_/_invalid_", "eks_audit/dt=2024-11-27/111122223333/prod-east"]
    expected = dict(lakesql.ddl_columns("eks_audit"))
    for f in files:
        meta = pq.ParquetFile(f)
        schema = meta.schema_arrow
        assert schema.names == list(expected), "column names and order are the contract"
        assert "dt" not in schema.names
        assert schema.field("event_time").type == pa.timestamp("ms", tz="UTC")
        assert schema.field("response_code").type == pa.int32()
        assert pa.types.is_list(schema.field("user_groups").type)
        assert pa.types.is_map(schema.field("user_extra").type)
        assert schema.field("user_extra").type.item_type == pa.list_(pa.field("element", pa.string()))
        rg = meta.metadata.row_group(0)
        for i in range(rg.num_columns):
            col = rg.column(i)
            assert col.compression == "ZSTD"
            assert col.statistics is not None and col.statistics.has_min_max or col.statistics.null_count == rg.num_rows
        times = pq.read_table(f, columns=["event_time"]).column(0).to_pylist()
        assert times == sorted(times)
    sts = pq.read_table(next((lake / "sts_sessions").rglob("*.parquet")))
    assert sts.schema.names == [n for n, _ in lakesql.ddl_columns("sts_sessions")]
    assert sts.column("expiration").to_pylist()[0].isoformat() == "2024-11-26T20:58:11+00:00"


def test_bad_cli_input_exits_2_with_one_line_reason(auditlake, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for args in (["invoke", "--event", bad], ["invoke", "--event", tmp_path / "missing.json"], ["frobnicate"],
                 ["ingest", tmp_path / "nowhere"]):
        r = run([auditlake, *args, *(["--lake", tmp_path / "l"] if args[0] == "invoke" else [])], check=False)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip(), args
    r = run([auditlake, "invoke", "--event", FIXTURES / "firehose-golden.json", "--lake", tmp_path / "l"],
            env={"AUDITLAKE_RAW_ARCHIVE": "maybe"}, check=False)
    assert r.returncode == 2 and b"AUDITLAKE_RAW_ARCHIVE" in r.stderr
    assert not (tmp_path / "l").exists()


def test_raw_archive_false_drops_processed_records(auditlake, tmp_path):
    r = invoke(auditlake, FIXTURES / "firehose-golden.json", tmp_path / "lake", tmp_path, env={"AUDITLAKE_RAW_ARCHIVE": "false"})
    results = [x["result"] for x in json.loads(r.stdout)["records"]]
    assert results.count("Dropped") == 5 and "Ok" not in results


def test_stdin_event_and_deterministic_rewrite(auditlake, tmp_path):
    lake = tmp_path / "lake"
    data = (FIXTURES / "firehose-golden.json").read_bytes()
    run([auditlake, "invoke", "--event", "-", "--lake", lake], input=data)
    first = sorted(p.relative_to(lake) for p in lake.rglob("*") if p.is_file())
    run([auditlake, "invoke", "--event", "-", "--lake", lake], input=data)  # a Firehose retry
    assert sorted(p.relative_to(lake) for p in lake.rglob("*") if p.is_file()) == first
    assert duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{lake}/eks_audit/**/*.parquet')").fetchone()[0] == 7


# ---- backfill ---------------------------------------------------------------------------

def test_ingest_cwl_payloads_raw_archive_and_cloudtrail_files(auditlake, tmp_path):
    key = "ASIABACKFILL0000001"
    src = tmp_path / "in"
    (src / "nested").mkdir(parents=True)
    audit = E.audit_envelope(A, "prod", [E.audit_event("bf-1", "2024-11-26T13:30:00Z", f"arn:aws:sts::{A}:assumed-role/ops/jdoe",
                                                       E.assumed_extra(A, "ops", "jdoe", key))])
    (src / "payload.json").write_bytes(audit)  # plain JSON payload
    # Firehose raw/ archive: records (gzip each) back to back, the object gzip again
    archive = E.gz(E.audit_envelope(A, "prod", [E.audit_event("bf-2", "2024-11-26T13:31:00Z", "system:anonymous")]))
    archive += E.gz(E.audit_envelope(A, "prod", [E.audit_event("bf-3", "2024-11-26T13:32:00Z", "system:anonymous")]))
    (src / "nested" / "central-audit-1-2024-11-26-13-35-00-abc.gz").write_bytes(E.gz(archive))
    trail = {"Records": [E.assume_role("2024-11-26T13:00:00Z", A, E.iam_user(A, "jdoe"), f"arn:aws:iam::{A}:role/ops", "jdoe", key),
                         {"eventSource": "ec2.amazonaws.com", "eventName": "DescribeInstances", "eventTime": "2024-11-26T13:00:00Z"}]}
    (src / "nested" / f"{A}_CloudTrail_us-east-1_20241126T1305Z_abc.json.gz").write_bytes(gzip.compress(json.dumps(trail).encode()))
    lake = tmp_path / "lake"
    r = run([auditlake, "ingest", "--lake", lake, src])
    assert b"3 audit events" in r.stderr and b"1 STS sessions" in r.stderr
    con = lakesql.connect(lake)
    got = lakesql.rows(con, "SELECT audit_id, principal_type, principal_name, attribution_status FROM eks_audit_attributed ORDER BY audit_id")
    assert [(g["audit_id"], g["principal_type"]) for g in got] == [("bf-1", "iam_user"), ("bf-2", "anonymous"), ("bf-3", "anonymous")]
    assert got[0]["principal_name"] == "jdoe"
    # ingesting the same files again overwrites
    run([auditlake, "ingest", "--lake", lake, src])
    assert lakesql.rows(lakesql.connect(lake), "SELECT count(*) AS n FROM eks_audit")[0]["n"] == 3
    # an unreadable file: reported, exit 2, the others still ingested
    (src / "zz-corrupt.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    r = run([auditlake, "ingest", "--lake", tmp_path / "lake2", src], check=False)
    assert r.returncode == 2 and b"zz-corrupt.gz" in r.stderr
    assert lakesql.rows(lakesql.connect(tmp_path / "lake2"), "SELECT count(*) AS n FROM eks_audit")[0]["n"] == 3


# ---- issue 3: the view agrees with ingest-time attribution ----------------------------

def _org_batches():
    """Audit events and the CloudTrail behind them: every identity class the view
    handles, a three-account chain, a GetFederationToken session and a missing record."""
    t = "2024-11-26T13:00:00Z"
    saml = E.sts("AssumeRoleWithSAML", t, A, {"type": "SAMLUser", "userName": "alice@example.com"},
                 {"roleArn": f"arn:aws:iam::{A}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_1", "roleSessionName": "alice@example.com",
                  "principalArn": f"arn:aws:iam::{A}:saml-provider/AWSSSO_1_DO_NOT_DELETE"},
                 {"credentials": E.creds("ASIASAML0000000000001"), "subject": "alice@example.com"})
    okta = E.sts("AssumeRoleWithSAML", t, A, {"type": "SAMLUser", "userName": "henry@example.com"},
                 {"roleArn": f"arn:aws:iam::{A}:role/staff", "roleSessionName": "henry", "principalArn": f"arn:aws:iam::{A}:saml-provider/Okta"},
                 {"credentials": E.creds("ASIAOKTA0000000000001"), "subject": "henry@example.com"}, event_id="okta-1")
    web = E.sts("AssumeRoleWithWebIdentity", t, A, {"type": "WebIdentityUser", "userName": "repo:org/app:ref:refs/heads/main"},
                {"roleArn": f"arn:aws:iam::{A}:role/gha", "roleSessionName": "GitHubActions"},
                {"credentials": E.creds("ASIAWEB00000000000001"), "subjectFromWebIdentityToken": "repo:org/app:ref:refs/heads/main",
                 "provider": f"arn:aws:iam::{A}:oidc-provider/token.actions.githubusercontent.com"})
    fed = E.sts("GetFederationToken", t, A, E.iam_user(A, "broker"), {"name": "carol"},
                {"credentials": E.creds("ASIAFED00000000000001"), "federatedUser": {"arn": f"arn:aws:sts::{A}:federated-user/carol"}})
    svc = E.assume_role(t, A, {"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}, f"arn:aws:iam::{A}:role/node", "i-0abc", "ASIASVC00000000000001",
                        event_id="svc-1")
    root = E.assume_role(t, A, {"type": "Root", "arn": f"arn:aws:iam::{A}:root", "accountId": A, "principalId": A},
                         f"arn:aws:iam::{A}:role/admin", "r", "ASIAROOT0000000000001", event_id="root-1")
    c1 = E.assume_role(t, C, E.iam_user(C, "jdoe"), f"arn:aws:iam::{B}:role/jump", "jdoe", "ASIACHAIN000000000001", "jdoe",
                       shared="sh-1", event_id="c1-caller")
    c1_owner = dict(c1, eventID="c1-owner", recipientAccountId=B, userIdentity={"type": "AWSAccount", "principalId": "AIDAJDOE", "accountId": C})
    c2 = E.assume_role("2024-11-26T13:01:00Z", B, E.assumed(B, "jump", "jdoe", "ASIACHAIN000000000001"), f"arn:aws:iam::{A}:role/mid", "jdoe",
                       "ASIACHAIN000000000002", "jdoe", event_id="c2")
    c3 = E.assume_role("2024-11-26T13:02:00Z", A, E.assumed(A, "mid", "jdoe", "ASIACHAIN000000000002"), f"arn:aws:iam::{A}:role/eks",
                       "EKSGetTokenAuth", "ASIACHAIN000000000003", "jdoe", event_id="c3")
    failed = E.sts("AssumeRole", t, A, E.iam_user(A, "mallory"), {"roleArn": f"arn:aws:iam::{A}:role/admin", "roleSessionName": "m"}, None,
                   error="AccessDenied", event_id="failed-1")
    # as CloudTrail really logs a denied call: requestParameters null, the role in the message
    denied = E.sts("AssumeRole", t, A, E.iam_user(A, "mallory"), None, None, error="AccessDenied", event_id="denied-1")
    denied["errorMessage"] = (f"User: arn:aws:iam::{A}:user/mallory is not authorized to perform: sts:AssumeRole "
                              f"on resource: arn:aws:iam::{A}:role/break-glass")
    trail = [c1_owner, saml, okta, web, fed, svc, root, c1, c2, c3, failed, denied] + _workload_trail(t)
    keys = ["ASIASAML0000000000001", "ASIAOKTA0000000000001", "ASIAWEB00000000000001", "ASIAFED00000000000001",
            "ASIASVC00000000000001", "ASIAROOT0000000000001", "ASIACHAIN000000000003", "ASIANORECORD00000001",
            # v-8 .. v-15: workloads (issue #11) and Identity Center's onBehalfOf
            "ASIAPOD00000000000001", "ASIAPODHOP0000000001", "ASIAIRSA000000000001", "ASIAIRSAHOP000000001",
            "ASIAEC2I000000000001", "ASIALAMBDA0000000001", "ASIAECS00000000000001", "ASIAOBO00000000000001",
            # v-16 .. v-18: what must not name a workload (the view's patterns and the resolver's
            # checks must reject alike): a bad namespace tag, an EC2 session that is not an
            # instance id, an IRSA-looking issuer behind another host's path
            "ASIAPODBAD0000000001", "ASIAEC2BAD0000000001", "ASIAIRSABAD000000001"]
    # each event names its key's own session, as aws-iam-authenticator logs it ...
    audits = [E.audit_event(f"v-{i}", "2024-11-26T13:30:00Z", *_logged_identity(trail, k)) for i, k in enumerate(keys)]
    # ... but one names another role than its key's session: 'conflict', nobody named
    audits.append(E.audit_event("v-conflict", "2024-11-26T13:30:00Z", f"arn:aws:sts::{A}:assumed-role/admin/s",
                                E.assumed_extra(A, "admin", "s", "ASIAOKTA0000000000001")))
    return E.audit_envelope(A, "prod", audits), E.trail_envelope(trail)


POD_TAGS = {"eks-cluster-arn": f"arn:aws:eks:us-west-2:{A}:cluster/prod-west", "eks-cluster-name": "prod-west",
            "kubernetes-namespace": "platform", "kubernetes-service-account": "fleet-operator",
            "kubernetes-pod-name": "fleet-operator-7c9d8b6f4-x2k4q", "kubernetes-pod-uid": "8d2c6f1e-3a4b-4c5d-9e8f-7a6b5c4d3e2f"}
IRSA_PROVIDER = f"arn:aws:iam::{A}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/C1A0B2C3D4E5F607"


def _service(t, service, role, session, key, tags=None, event_id=None):
    e = E.assume_role(t, A, {"type": "AWSService", "invokedBy": service}, f"arn:aws:iam::{A}:role/{role}", session, key,
                      event_id=event_id or f"svc-{key}")
    e["sourceIPAddress"] = e["userAgent"] = service
    if tags:
        e["requestParameters"]["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        e["requestParameters"]["transitiveTagKeys"] = list(tags)
    return e


def _workload_trail(t):
    """Pod Identity, IRSA (each with a role chained after it), EC2, Lambda, ECS, and a
    role assumed by a session acting on behalf of an Identity Center user."""
    pod = _service(t, "pods.eks.amazonaws.com", "fleet-operator", "eks-prod-west-fleet-oper-1", "ASIAPOD00000000000001", POD_TAGS)
    pod_hop = E.assume_role("2024-11-26T13:01:00Z", A, E.assumed(A, "fleet-operator", "eks-prod-west-fleet-oper-1", "ASIAPOD00000000000001"),
                            f"arn:aws:iam::{B}:role/eks-admin", "hop", "ASIAPODHOP0000000001", event_id="pod-hop")
    irsa = E.sts("AssumeRoleWithWebIdentity", t, A, {"type": "WebIdentityUser", "userName": "system:serviceaccount:ci:runner", "identityProvider": IRSA_PROVIDER},
                 {"roleArn": f"arn:aws:iam::{A}:role/runner", "roleSessionName": "botocore-session-1"},
                 {"credentials": E.creds("ASIAIRSA000000000001"), "subjectFromWebIdentityToken": "system:serviceaccount:ci:runner",
                  "provider": IRSA_PROVIDER, "audience": "sts.amazonaws.com"}, event_id="irsa-1")
    irsa_hop = E.assume_role("2024-11-26T13:01:00Z", A, E.assumed(A, "runner", "botocore-session-1", "ASIAIRSA000000000001"),
                             f"arn:aws:iam::{A}:role/deployer", "hop", "ASIAIRSAHOP000000001", event_id="irsa-hop")
    ec2 = _service(t, "ec2.amazonaws.com", "bastion-host", "i-0b7e3c9a1f2d4e6a8", "ASIAEC2I000000000001")
    fn = _service(t, "lambda.amazonaws.com", "orders-fn", "orders-reconciler", "ASIALAMBDA0000000001")
    ecs = _service(t, "ecs-tasks.amazonaws.com", "task-role", "8f3e2d1c0b9a48e7a6b5c4d3e2f1a0b9", "ASIAECS00000000000001")
    obo_caller = E.assumed(A, "DataAnalyst", "alice", "ASIASAML0000000000001")
    obo_caller["onBehalfOf"] = {"userId": "94482488-3041-7026-18f3-be45837cd0e4",
                                "identityStoreArn": f"arn:aws:identitystore::{A}:identitystore/d-9067642ac7"}
    obo = E.assume_role("2024-11-26T13:01:00Z", A, obo_caller, f"arn:aws:iam::{A}:role/eks-viewer", "alice", "ASIAOBO00000000000001",
                        event_id="obo-1")
    bad_pod = _service(t, "pods.eks.amazonaws.com", "fleet-operator", "eks-x", "ASIAPODBAD0000000001",
                       dict(POD_TAGS, **{"kubernetes-namespace": "Not A Namespace"}))
    bad_ec2 = _service(t, "ec2.amazonaws.com", "bastion-host", "i-not-hex", "ASIAEC2BAD0000000001")
    spoofed = f"arn:aws:iam::{A}:oidc-provider/attacker.example/oidc.eks.us-east-1.amazonaws.com/id/C1A0B2C3D4E5F607"
    bad_irsa = E.sts("AssumeRoleWithWebIdentity", t, A, {"type": "WebIdentityUser", "userName": "system:serviceaccount:kube-system:x"},
                     {"roleArn": f"arn:aws:iam::{A}:role/runner", "roleSessionName": "s"},
                     {"credentials": E.creds("ASIAIRSABAD000000001"), "subjectFromWebIdentityToken": "system:serviceaccount:kube-system:x",
                      "provider": spoofed}, event_id="irsa-bad")
    return [pod, pod_hop, irsa, irsa_hop, ec2, fn, ecs, obo, bad_pod, bad_ec2, bad_irsa]


def _logged_identity(trail, key):
    """(username, extra) of an audit event made with `key`: the role (or federated user)
    of the session that issued it, or a made-up role when no record has the key."""
    for e in trail:
        resp = e.get("responseElements") or {}
        if (resp.get("credentials") or {}).get("accessKeyId") != key:
            continue
        if "federatedUser" in resp:
            arn = resp["federatedUser"]["arn"]
            return arn, {"accessKeyId": [key], "arn": [arn]}
        role_arn = e["requestParameters"]["roleArn"]
        account, role = role_arn.split(":")[4], role_arn.rsplit("/", 1)[1]
        return f"arn:aws:sts::{account}:assumed-role/{role}/s", E.assumed_extra(account, role, "s", key)
    return f"arn:aws:sts::{A}:assumed-role/r/s", E.assumed_extra(A, "r", "s", key)


ATTR = ["principal_type", "principal_name", "principal_arn", "principal_account_id", "source_identity", "role_chain",
        "attribution_method", "attribution_status", "principal_cluster", "principal_pod", "principal_user_id"]


def test_view_fills_late_attribution_exactly_as_ingest_does(auditlake, tmp_path):
    audit, trail = _org_batches()
    late, early = tmp_path / "late", tmp_path / "early"
    # audit first: everything pending at ingest, then CloudTrail lands
    invoke(auditlake, E.firehose_event([E.gz(audit)]), late, tmp_path)
    invoke(auditlake, E.firehose_event([E.gz(trail)]), late, tmp_path)
    # CloudTrail first: resolved at ingest
    invoke(auditlake, E.firehose_event([E.gz(trail)]), early, tmp_path)
    invoke(auditlake, E.firehose_event([E.gz(audit)]), early, tmp_path)
    cols = ", ".join(ATTR)
    at_ingest = lakesql.rows(lakesql.connect(late), f"SELECT audit_id, {cols} FROM eks_audit ORDER BY audit_id")
    assert {r["attribution_status"] for r in at_ingest} == {"pending"}
    via_view = lakesql.rows(lakesql.connect(late), f"SELECT audit_id, {cols} FROM eks_audit_attributed ORDER BY audit_id")
    resolved = lakesql.rows(lakesql.connect(early), f"SELECT audit_id, {cols} FROM eks_audit ORDER BY audit_id")
    # the resolved-at-ingest rows through the view are unchanged
    assert lakesql.rows(lakesql.connect(early), f"SELECT audit_id, {cols} FROM eks_audit_attributed ORDER BY audit_id") == resolved
    assert via_view == resolved
    by_id = {r["audit_id"]: r for r in resolved}
    assert (by_id["v-0"]["principal_type"], by_id["v-0"]["principal_name"]) == ("identity_center_user", "alice@example.com")
    assert (by_id["v-1"]["principal_type"], by_id["v-1"]["principal_name"]) == ("saml_user", "henry@example.com")
    assert (by_id["v-2"]["principal_type"], by_id["v-2"]["principal_name"]) == ("web_identity", "repo:org/app:ref:refs/heads/main")
    assert (by_id["v-3"]["principal_type"], by_id["v-3"]["principal_name"], by_id["v-3"]["role_chain"]) == ("federated_user", "carol", [])
    assert (by_id["v-4"]["principal_type"], by_id["v-4"]["principal_name"], by_id["v-4"]["principal_arn"]) == ("aws_service", "ec2.amazonaws.com", None)
    assert (by_id["v-5"]["principal_type"], by_id["v-5"]["principal_name"]) == ("root", "root")
    chain = by_id["v-6"]
    assert (chain["principal_type"], chain["principal_name"], chain["principal_account_id"], chain["source_identity"]) == ("iam_user", "jdoe", C, "jdoe")
    assert chain["role_chain"] == [f"arn:aws:iam::{B}:role/jump", f"arn:aws:iam::{A}:role/mid", f"arn:aws:iam::{A}:role/eks"]
    assert by_id["v-7"]["attribution_status"] == "pending" and by_id["v-7"]["principal_name"] is None
    # workloads, directly and through a chained role (the view and ingest agree above)
    pick = lambda i: tuple(by_id[f"v-{i}"][c] for c in ("principal_type", "principal_name", "principal_cluster", "principal_pod"))
    assert pick(8) == pick(9) == ("k8s_workload", "platform:fleet-operator", "prod-west", "fleet-operator-7c9d8b6f4-x2k4q")
    assert by_id["v-8"]["principal_arn"] == POD_TAGS["eks-cluster-arn"]
    assert by_id["v-9"]["role_chain"] == [f"arn:aws:iam::{A}:role/fleet-operator", f"arn:aws:iam::{B}:role/eks-admin"]
    assert pick(10) == pick(11) == ("k8s_workload", "ci:runner", None, None)
    assert by_id["v-10"]["principal_arn"] == IRSA_PROVIDER
    assert pick(12) == ("ec2_instance", "i-0b7e3c9a1f2d4e6a8", None, None)
    assert pick(13) == ("aws_service", "lambda:orders-reconciler", None, None)
    assert pick(14) == ("aws_service", "ecs:8f3e2d1c0b9a48e7a6b5c4d3e2f1a0b9", None, None)
    assert (by_id["v-15"]["principal_name"], by_id["v-15"]["principal_user_id"]) == ("alice@example.com", "94482488-3041-7026-18f3-be45837cd0e4")
    assert by_id["v-0"]["principal_user_id"] is None
    assert pick(16) == ("aws_service", "pods.eks.amazonaws.com", None, None)
    assert pick(17) == ("aws_service", "ec2.amazonaws.com", None, None)
    assert pick(18) == ("web_identity", "system:serviceaccount:kube-system:x", None, None)
    # the issuer map names the IRSA workload's cluster at ingest
    mapped = tmp_path / "mapped"
    env = {"AUDITLAKE_OIDC_CLUSTERS": "C1A0B2C3D4E5F607=ci-tools"}
    invoke(auditlake, E.firehose_event([E.gz(trail)]), mapped, tmp_path, env=env)
    invoke(auditlake, E.firehose_event([E.gz(audit)]), mapped, tmp_path, env=env)
    got = lakesql.rows(lakesql.connect(mapped), "SELECT audit_id, principal_cluster FROM eks_audit WHERE audit_id IN ('v-10', 'v-11') ORDER BY 1")
    assert [r["principal_cluster"] for r in got] == ["ci-tools", "ci-tools"]
    tags = lakesql.rows(lakesql.connect(mapped), "SELECT element_at(session_tags, 'kubernetes-pod-name') AS pod FROM sts_sessions WHERE access_key_id = 'ASIAPOD00000000000001'")
    assert tags == [{"pod": "fleet-operator-7c9d8b6f4-x2k4q"}]
    conflict = by_id["v-conflict"]
    assert (conflict["principal_type"], conflict["principal_name"], conflict["attribution_status"], conflict["role_chain"]) == (
        "assumed_role", None, "conflict", [])
    # sts_sessions keeps the failed call, one row per cross-account call
    sts = lakesql.rows(lakesql.connect(early), "SELECT event_id, error_code, access_key_id, role_arn, error_message FROM sts_sessions ORDER BY event_id")
    ids = [s["event_id"] for s in sts]
    assert "failed-1" in ids and "c1-caller" in ids and "c1-owner" not in ids
    # a denied call keeps its target role (from errorMessage: requestParameters is null)
    denied = next(s for s in sts if s["event_id"] == "denied-1")
    assert (denied["error_code"], denied["access_key_id"], denied["role_arn"]) == (
        "AccessDenied", None, f"arn:aws:iam::{A}:role/break-glass")
    assert "is not authorized to perform: sts:AssumeRole" in denied["error_message"]
    assert next(s for s in sts if s["event_id"] == "failed-1")["access_key_id"] is None


def test_view_deduplicates_copies_that_landed_in_different_batches(auditlake, tmp_path):
    """The owner copy and the caller copy of one cross-account call in two batches: two
    sts_sessions rows, and the view uses the caller copy."""
    lake = tmp_path / "lake"
    caller = E.assume_role("2024-11-26T13:00:00Z", C, E.iam_user(C, "jdoe"), f"arn:aws:iam::{A}:role/ops", "jdoe", "ASIAXB00000000000001",
                           shared="sh-2", event_id="x-caller")
    owner = dict(caller, eventID="x-owner", recipientAccountId=A, userIdentity={"type": "AWSAccount", "principalId": "AIDAJDOE", "accountId": C})
    audit = E.audit_envelope(A, "prod", [E.audit_event("x-1", "2024-11-26T13:30:00Z", f"arn:aws:sts::{A}:assumed-role/ops/jdoe",
                                                       E.assumed_extra(A, "ops", "jdoe", "ASIAXB00000000000001"))])
    invoke(auditlake, E.firehose_event([E.gz(audit)]), lake, tmp_path)
    invoke(auditlake, E.firehose_event([E.gz(E.trail_envelope([owner]))]), lake, tmp_path)
    con = lakesql.connect(lake)
    assert lakesql.rows(con, "SELECT attribution_status FROM eks_audit_attributed")[0]["attribution_status"] == "pending"
    invoke(auditlake, E.firehose_event([E.gz(E.trail_envelope([caller]))]), lake, tmp_path)
    con = lakesql.connect(lake)
    assert lakesql.rows(con, "SELECT count(*) AS n FROM sts_sessions")[0]["n"] == 2
    row = lakesql.rows(con, "SELECT principal_name, principal_account_id, attribution_status FROM eks_audit_attributed")[0]
    assert row == {"principal_name": "jdoe", "principal_account_id": C, "attribution_status": "resolved"}


# ---- the demo ---------------------------------------------------------------------------

def test_demo_lake_and_incident_report(demo_lake):
    report = (demo_lake / "demo-report.txt").read_text()
    assert "by dave@example.com [identity_center_user]" in report
    assert "by bob [iam_user] via deployer -> eks-breakglass" in report
    assert "secrets listed anonymously (20 requests" in report
    assert "burst of 60 forbidden (403) requests in 118 s\n     by erin@example.com" in report
    # the incident as a timeline, in time order, with the aws-auth grant playbook 06 finds
    steps = re.findall(r"^  \d+\. (\d\d:\d\d:\d\d) (\S+)  (.*)$", report.split("Incident timeline")[1].split("Workloads")[0], re.M)
    assert [t for t, _, _ in steps] == sorted(t for t, _, _ in steps) and len(steps) == 6
    assert steps[0] == ("10:30:00", "prod-west", "patched ConfigMap kube-system/aws-auth: maps arn:aws:iam::222222222222:role/ci-deploy to system:masters")
    assert "platform:fleet-operator [k8s_workload, runs in prod-west, pod fleet-operator-7c9d8b6f4-x2k4q]: 12 requests on prod-east" in report
    con = lakesql.connect(demo_lake)
    per = lakesql.rows(con, "SELECT account_id, cluster, count(*) AS n FROM eks_audit GROUP BY 1, 2 ORDER BY 1, 2")
    assert [(p["account_id"], p["cluster"]) for p in per] == [
        ("222222222222", "prod-east"), ("222222222222", "prod-west"), ("333333333333", "staging"), ("444444444444", "ci-tools")]
    total = sum(p["n"] for p in per)
    assert total > 3000
    assert f"{total} audit events written" in report
    people = lakesql.rows(con, "SELECT DISTINCT principal_name FROM eks_audit_attributed WHERE attribution_status = 'resolved' ORDER BY 1")
    assert [p["principal_name"] for p in people] == [
        "alice@example.com", "bob", "ci:release-runner", "dave@example.com", "erin@example.com", "frank", "grace", "henry@example.com",
        "i-0b7e3c9a1f2d4e6a8", "platform:fleet-operator", "repo:example/payments:ref:refs/heads/main"]
    # workloads are named: the IRSA release job (chained into prod), the Pod Identity
    # operator of prod-west acting on prod-east, the bastion instance
    wl = lakesql.rows(con, """SELECT principal_type, principal_name, max(principal_cluster) AS from_cluster, max(principal_pod) AS pod,
        cluster, count(*) AS n FROM eks_audit_attributed WHERE principal_type IN ('k8s_workload', 'ec2_instance')
        GROUP BY ALL ORDER BY principal_name""")
    assert [(w["principal_type"], w["principal_name"], w["from_cluster"], w["pod"], w["cluster"], w["n"]) for w in wl] == [
        ("k8s_workload", "ci:release-runner", "ci-tools", None, "prod-east", 3),
        ("ec2_instance", "i-0b7e3c9a1f2d4e6a8", None, None, "prod-east", 12),
        ("k8s_workload", "platform:fleet-operator", "prod-west", "fleet-operator-7c9d8b6f4-x2k4q", "prod-east", 12)], wl
    # the release job's first patch was pending at ingest (resolved by the view, which
    # has no issuer map); the rest were resolved at ingest with the cluster named
    rel = lakesql.rows(con, """SELECT e.attribution_status AS at_ingest, e.principal_cluster AS ingest_cluster, v.principal_name
        FROM eks_audit e JOIN eks_audit_attributed v USING (log_group, log_stream, cwl_event_id)
        WHERE v.principal_name = 'ci:release-runner' ORDER BY e.event_time""")
    assert [(r["at_ingest"], r["ingest_cluster"]) for r in rel] == [("pending", None), ("resolved", "ci-tools"), ("resolved", "ci-tools")]
    # every Deployment change in the demo names a person or a workload
    changes = lakesql.rows(con, """SELECT principal_type, principal_name, count(*) AS n FROM eks_audit_attributed
        WHERE object_resource = 'deployments' AND verb IN ('create', 'update', 'patch', 'delete') GROUP BY ALL ORDER BY 2""")
    assert [(c["principal_type"], c["principal_name"]) for c in changes] == [
        ("k8s_workload", "ci:release-runner"), ("k8s_workload", "platform:fleet-operator"), ("web_identity", "repo:example/payments:ref:refs/heads/main")]
    # nobody is guessed for the shared EKSGetTokenAuth name on the legacy cluster
    amb = lakesql.rows(con, "SELECT count(*) AS n FROM eks_audit WHERE attribution_status = 'ambiguous' AND cluster = 'staging'")
    assert amb[0]["n"] == 15
