#!/usr/bin/env python3
"""Self-test of the Python peer handler (run by tests/test_bench_peers.py).

    /work/venv-main/bin/python bench/peer/selftest.py

Builds a small Firehose event and an STS session file in a temporary directory, runs
handler.py through its CLI, reads the Parquet back with pyarrow and checks the columns,
partitions, sort order, attribution and the Firehose response. If the repository's
golden fixture is present, it also runs the handler over it and checks the results.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # leave no __pycache__ in the repository
sys.path.insert(0, str(HERE))
import handler  # noqa: E402

ACCT = "111122223333"
OTHER = "444455556666"
IDC_PROVIDER = f"arn:aws:iam::{ACCT}:saml-provider/AWSSSO_0123456789abcdef_DO_NOT_DELETE"
ROLE_IDC = f"arn:aws:iam::{ACCT}:role/aws-reserved/sso.amazonaws.com/us-east-1/AWSReservedSSO_Admin_0123"
ROLE_HOP = f"arn:aws:iam::{ACCT}:role/hop"
ROLE_EKS = f"arn:aws:iam::{OTHER}:role/eks-admin"


def gz(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def envelope(owner, group, stream, messages, extracted=None, ts=1732626427000, kind="DATA_MESSAGE"):
    events = []
    for i, m in enumerate(messages):
        e = {"id": str(38480917865042697267627490045603633139480491071049695232 + i),
             "timestamp": ts + i, "message": m}
        if extracted:
            e["extractedFields"] = extracted
        events.append(e)
    return json.dumps({"messageType": kind, "owner": owner, "logGroup": group,
                       "logStream": stream, "subscriptionFilters": ["f"],
                       "logEvents": events}).encode()


def audit(audit_id, at, username, extra=None, groups=("system:authenticated",), **kw):
    ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
          "auditID": audit_id, "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces",
          "verb": "list", "user": {"username": username, "uid": "u-" + audit_id,
                                   "groups": list(groups)},
          "sourceIPs": ["10.0.0.1", "198.51.100.24"], "userAgent": "kubectl/v1.31.2",
          "objectRef": {"resource": "namespaces", "apiVersion": "v1"},
          "responseStatus": {"metadata": {}, "code": 200},
          "requestReceivedTimestamp": at, "stageTimestamp": at,
          "annotations": {"authorization.k8s.io/decision": "allow",
                          "authorization.k8s.io/reason": "RBAC: allowed"}}
    if extra is not None:
        ev["user"]["extra"] = extra
    ev.update(kw)
    return json.dumps(ev, separators=(",", ":"))


def assumed(account, role, session, key):
    return {"accessKeyId": [key],
            "arn": [f"arn:aws:sts::{account}:assumed-role/{role}/{session}"],
            "canonicalArn": [f"arn:aws:iam::{account}:role/{role}"],
            "sessionName": [session], "principalId": ["AROAEXAMPLE"]}


SESSIONS = [
    # Identity Center user -> hop -> eks-admin (role chain of three, source identity on hop)
    {"access_key_id": "ASIAIDC1", "event_name": "AssumeRoleWithSAML", "caller_type": None,
     "role_arn": ROLE_IDC, "role_session_name": "alice@example.com",
     "saml_subject": "alice@example.com", "saml_provider_arn": IDC_PROVIDER},
    {"access_key_id": "ASIAHOP2", "event_name": "AssumeRole", "caller_type": "AssumedRole",
     "caller_access_key_id": "ASIAIDC1", "role_arn": ROLE_HOP, "role_session_name": "alice",
     "source_identity": "alice-si"},
    {"access_key_id": "ASIAEKS3", "event_name": "AssumeRole", "caller_type": "AssumedRole",
     "caller_access_key_id": "ASIAHOP2", "role_arn": ROLE_EKS, "role_session_name": "alice"},
    # IAM user assumes a role
    {"access_key_id": "ASIAUSR4", "event_name": "AssumeRole", "caller_type": "IAMUser",
     "caller_arn": f"arn:aws:iam::{ACCT}:user/ops/bob", "caller_account_id": ACCT,
     "caller_access_key_id": "AKIABOB", "caller_user_name": "bob", "role_arn": ROLE_EKS},
    # plain SAML, web identity, federation token, AWS service, other-account copy
    {"access_key_id": "ASIASAML5", "event_name": "AssumeRoleWithSAML", "role_arn": ROLE_EKS,
     "saml_subject": "carol", "saml_provider_arn": f"arn:aws:iam::{OTHER}:saml-provider/Okta"},
    {"access_key_id": "ASIAWEB6", "event_name": "AssumeRoleWithWebIdentity", "role_arn": ROLE_EKS,
     "web_identity_subject": "repo:org/app:ref:refs/heads/main",
     "web_identity_provider": "token.actions.githubusercontent.com"},
    {"access_key_id": "ASIAFED7", "event_name": "GetFederationToken", "caller_type": "IAMUser",
     "caller_account_id": ACCT, "role_session_name": "dave",
     "assumed_role_arn": f"arn:aws:sts::{ACCT}:federated-user/dave"},
    {"access_key_id": "ASIASVC8", "event_name": "AssumeRole", "caller_type": "AWSService",
     "caller_user_name": "eks.amazonaws.com", "role_arn": ROLE_EKS},
    {"access_key_id": "ASIAACC9", "event_name": "AssumeRole", "caller_type": "AWSAccount",
     "caller_account_id": ACCT, "role_arn": ROLE_EKS},
    # a loop must not hang
    {"access_key_id": "ASIALOOPA", "event_name": "AssumeRole", "caller_type": "AssumedRole",
     "caller_access_key_id": "ASIALOOPB", "role_arn": ROLE_HOP},
    {"access_key_id": "ASIALOOPB", "event_name": "AssumeRole", "caller_type": "AssumedRole",
     "caller_access_key_id": "ASIALOOPA", "role_arn": ROLE_HOP},
]

DAY1 = "2024-11-26T13:07:0{}.461683Z"
DAY2 = "2024-11-27T00:00:01.000999Z"

# audit id -> expected (principal_type, name, arn, account, source_identity, role_chain, method, status)
EXPECT = {
    "a-idc": ("identity_center_user", "alice@example.com", IDC_PROVIDER, ACCT, "alice-si",
              [ROLE_IDC, ROLE_HOP, ROLE_EKS], "access_key", "resolved"),
    "a-idc-again": ("identity_center_user", "alice@example.com", IDC_PROVIDER, ACCT, "alice-si",
                    [ROLE_IDC, ROLE_HOP, ROLE_EKS], "access_key", "resolved"),
    "a-iam-direct": ("iam_user", "jdoe", f"arn:aws:iam::{ACCT}:user/jdoe", ACCT, None, [],
                     "direct", "resolved"),
    "a-iam-role": ("iam_user", "bob", f"arn:aws:iam::{ACCT}:user/ops/bob", ACCT, None, [ROLE_EKS],
                   "access_key", "resolved"),
    "a-saml": ("saml_user", "carol", f"arn:aws:iam::{OTHER}:saml-provider/Okta", OTHER, None,
               [ROLE_EKS], "access_key", "resolved"),
    "a-web": ("web_identity", "repo:org/app:ref:refs/heads/main",
              "token.actions.githubusercontent.com", OTHER, None, [ROLE_EKS], "access_key", "resolved"),
    "a-fed": ("federated_user", "dave", f"arn:aws:sts::{ACCT}:federated-user/dave", ACCT, None,
              [], "access_key", "resolved"),
    "a-svc": ("aws_service", "eks.amazonaws.com", None, None, None, [ROLE_EKS], "access_key", "resolved"),
    "a-account": ("assumed_role", None, None, None, None, [], "access_key", "pending"),
    "a-missing": ("assumed_role", None, None, None, None, [], "access_key", "pending"),
    "a-loop": ("assumed_role", None, None, None, None, [], "access_key", "pending"),
    "a-nokey": ("assumed_role", None, None, None, None, [], "session_name", "pending"),
    "a-sa": ("k8s_service_account", "ci:deployer", None, None, None, [], "none", "not_applicable"),
    "a-node": ("k8s_system", "system:node:ip-10-0-1-2", None, None, None, [], "none", "not_applicable"),
    "a-anon": ("anonymous", "system:anonymous", None, None, None, [], "none", "not_applicable"),
    "a-unauth": ("anonymous", "someone", None, None, None, [], "none", "not_applicable"),
    "a-oidc": ("unknown", "oidc:erin", None, None, None, [], "none", "not_applicable"),
    "a-day2": ("identity_center_user", "alice@example.com", IDC_PROVIDER, ACCT, "alice-si",
               [ROLE_IDC, ROLE_HOP, ROLE_EKS], "access_key", "resolved"),
    "a-trunc": ("identity_center_user", "alice@example.com", IDC_PROVIDER, ACCT, "alice-si",
                [ROLE_IDC, ROLE_HOP, ROLE_EKS], "access_key", "resolved"),
    "a-other-cluster": ("iam_user", "bob", f"arn:aws:iam::{ACCT}:user/ops/bob", ACCT, None,
                        [ROLE_EKS], "access_key", "resolved"),
}
ATTR_COLS = ["principal_type", "principal_name", "principal_arn", "principal_account_id",
             "source_identity", "role_chain", "attribution_method", "attribution_status"]


def build_event(tmp: Path) -> tuple[Path, Path, dict]:
    idc = assumed(OTHER, "eks-admin", "alice@example.com", "ASIAEKS3")
    truncated = audit("a-trunc", DAY1.format(8),
                      f"arn:aws:sts::{OTHER}:assumed-role/eks-admin/alice-example.com", idc)[:-40] + "[Truncated...]"
    prod = [
        # out of time order on purpose: the file must come back sorted by event_time
        audit("a-idc-again", DAY1.format(9), f"arn:aws:sts::{OTHER}:assumed-role/eks-admin/alice-example.com", idc,
              requestObject={"kind": "RoleBinding", "subjects": [{"name": "bob"}]},
              responseStatus={"code": 403, "status": "Failure", "reason": "Forbidden", "message": "no"},
              impersonatedUser={"username": "ops", "groups": ["ops-team"]}),
        audit("a-idc", DAY1.format(1), f"arn:aws:sts::{OTHER}:assumed-role/eks-admin/alice-example.com", idc),
        audit("a-iam-direct", DAY1.format(2), "jdoe-mapped",
              {"arn": [f"arn:aws:iam::{ACCT}:user/jdoe"], "accessKeyId": ["AKIAJDOE"]}),
        audit("a-iam-role", DAY1.format(3), "bob", assumed(OTHER, "eks-admin", "bob", "ASIAUSR4")),
        audit("a-saml", DAY1.format(3), "carol", assumed(OTHER, "eks-admin", "carol", "ASIASAML5")),
        audit("a-web", DAY1.format(3), "gh", assumed(OTHER, "eks-admin", "gh", "ASIAWEB6")),
        audit("a-fed", DAY1.format(3), f"arn:aws:sts::{ACCT}:federated-user/dave",
              {"accessKeyId": ["ASIAFED7"], "arn": [f"arn:aws:sts::{ACCT}:federated-user/dave"]}),
        audit("a-svc", DAY1.format(4), "svc", assumed(OTHER, "eks-admin", "svc", "ASIASVC8")),
        audit("a-account", DAY1.format(4), "x", assumed(OTHER, "eks-admin", "x", "ASIAACC9")),
        audit("a-missing", DAY1.format(4), "x", assumed(OTHER, "eks-admin", "x", "ASIANOTTHERE")),
        audit("a-loop", DAY1.format(4), "x", assumed(OTHER, "eks-admin", "x", "ASIALOOPA")),
        audit("a-nokey", DAY1.format(4), f"arn:aws:sts::{OTHER}:assumed-role/eks-admin/old-style"),
        audit("a-sa", DAY1.format(5), "system:serviceaccount:ci:deployer",
              {"authentication.kubernetes.io/pod-name": ["deployer-1"], "odd": "scalar"},
              annotations={"authorization.k8s.io/decision": "forbid", "n": 3}),
        audit("a-node", DAY1.format(5), "system:node:ip-10-0-1-2"),
        audit("a-anon", DAY1.format(5), "system:anonymous", groups=("system:unauthenticated",)),
        audit("a-unauth", DAY1.format(5), "someone", groups=("system:unauthenticated",)),
        audit("a-oidc", DAY1.format(6), "oidc:erin"),
        audit("a-day2", DAY2, "a", idc),
        truncated,
        "not json at all",
    ]
    env1 = envelope(OTHER, "/aws/eks/prod/cluster", "kube-apiserver-audit-0a1b", prod,
                    extracted={"@aws.account": OTHER, "@aws.region": "eu-west-1"})
    other_cluster = envelope(ACCT, "/aws/eks/dev_1/cluster", "kube-apiserver-audit-ff",
                             [audit("a-other-cluster", DAY1.format(7), "bob",
                                    assumed(OTHER, "eks-admin", "bob", "ASIAUSR4"))])
    bad_cluster = envelope("notanaccount", "/aws/eks/../evil/cluster", "kube-apiserver-audit-1",
                           [audit("a-badgroup", DAY1.format(7), "system:anonymous")])
    control = envelope("CloudwatchLogs", "log_group_name", "log_stream_name",
                       ["CWL CONTROL MESSAGE"], kind="CONTROL_MESSAGE")
    authn = envelope(OTHER, "/aws/eks/prod/cluster", "authenticator-abc", ["time=... level=info"])
    records = [
        ("r-audit", gz(env1)),
        # two gzip members, the second holding two documents back to back
        ("r-multi", gz(other_cluster) + gz(bad_cluster + b"\n" + authn)),
        ("r-control", gz(control)),
        ("r-not-gzip", b"plain text"),
        ("r-truncated-gzip", gz(env1)[:-30]),
        ("r-not-envelope", gz(b'{"hello":"world"}')),
        ("r-authenticator", gz(authn)),
    ]
    event = {"invocationId": "inv-1", "region": "us-east-1",
             "records": [{"recordId": rid, "approximateArrivalTimestamp": 1732626428123,
                          "data": base64.b64encode(b).decode()} for rid, b in records]}
    ev_path = tmp / "event.json"
    ev_path.write_text(json.dumps(event))
    ss_path = tmp / "sessions.jsonl"
    ss_path.write_text("\n".join(json.dumps(s) for s in SESSIONS) + "\n")
    decompressed = sum(len(gzip.decompress(b)) for rid, b in records
                       if rid not in ("r-not-gzip", "r-truncated-gzip"))
    return ev_path, ss_path, {"decompressed": decompressed}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main() -> int:
    schema = handler.load_schema()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ev_path, ss_path, facts = build_event(tmp)
        out = tmp / "lake"
        resp_path = tmp / "response.json"
        proc = subprocess.run(
            [sys.executable, str(HERE / "handler.py"), "--event", str(ev_path),
             "--sessions", str(ss_path), "--out", str(out), "--repeat", "3",
             "--response", str(resp_path)],
            check=True, capture_output=True, text=True)
        lines = proc.stdout.strip().splitlines()
        check(len(lines) == 1, f"one stdout line, got {lines}")
        summary = json.loads(lines[0])
        print(lines[0])
        check(summary["impl"] == "python" and summary["repeats"] == 3, "summary header")
        check(summary["seconds_best"] <= summary["seconds_median"], "best <= median")
        check(summary["records"] == 7, "records")
        check(summary["decompressed_bytes"] == facts["decompressed"],
              f"decompressed_bytes {summary['decompressed_bytes']} != {facts['decompressed']}")

        # Firehose response: one entry per record, in order, with the right results.
        resp = json.loads(resp_path.read_text())["records"]
        ev = json.loads(ev_path.read_text())
        want = {"r-audit": "Ok", "r-multi": "Ok", "r-control": "Dropped",
                "r-not-gzip": "ProcessingFailed", "r-truncated-gzip": "ProcessingFailed",
                "r-not-envelope": "ProcessingFailed", "r-authenticator": "Ok"}
        check([r["recordId"] for r in resp] == [r["recordId"] for r in ev["records"]], "record ids")
        for r, src in zip(resp, ev["records"]):
            check(r["result"] == want[r["recordId"]], f"{r['recordId']}: {r['result']}")
            expect_data = "" if r["result"] == "Dropped" else src["data"]
            check(r["data"] == expect_data, f"{r['recordId']}: data")

        # Partitions: one file per (dt, account, cluster).
        files = sorted(p.relative_to(out).parent.as_posix() for p in out.rglob("*.parquet"))
        check(files == [
            f"eks_audit/dt=2024-11-26/{ACCT}/dev_1",
            f"eks_audit/dt=2024-11-26/{OTHER}/prod",
            "eks_audit/dt=2024-11-26/_invalid_/_invalid_",
            f"eks_audit/dt=2024-11-27/{OTHER}/prod",
        ], f"partitions {files}")
        check(len(list(out.rglob("*.parquet"))) == 4, "repeats overwrite, never duplicate")
        check(summary["parquet_bytes"] == sum(p.stat().st_size for p in out.rglob("*.parquet")),
              "parquet_bytes")

        rows = {}
        for p in out.rglob("*.parquet"):
            pf = pq.ParquetFile(p)
            table = pf.read()
            check(table.schema.names == schema.names, f"{p}: column order")
            check(table.schema.equals(schema), f"{p}: types {table.schema} != {schema}")
            md = pf.metadata.row_group(0)
            check(md.column(0).compression == "ZSTD", "zstd")
            check(md.column(schema.get_field_index("account_id")).statistics is not None, "stats")
            times = table.column("event_time").to_pylist()
            check(times == sorted(times), f"{p}: sorted by event_time")
            for r in table.to_pylist():
                key = r["audit_id"] or r["raw_message"]
                check(key not in rows, f"duplicate row {key}")
                rows[key] = r

        check(summary["events"] == len(rows) == 22, f"events {summary['events']} rows {len(rows)}")
        for aid, exp in EXPECT.items():
            got = tuple(rows[aid][c] for c in ATTR_COLS)
            check(got == exp, f"{aid}: attribution\n  got  {got}\n  want {exp}")

        r = rows["a-idc-again"]
        check(r["account_id"] == OTHER and r["cluster"] == "prod" and r["region"] == "eu-west-1", "stamps")
        check(r["log_group"] == "/aws/eks/prod/cluster" and r["log_stream"] == "kube-apiserver-audit-0a1b", "log")
        check(r["cwl_event_id"] == "38480917865042697267627490045603633139480491071049695232", "cwl id")
        check(r["event_time"].isoformat() == "2024-11-26T13:07:09.461000+00:00", "event_time ms, truncated")
        check(r["stage_time"] == r["event_time"], "stage_time")
        check(r["ingest_time"] is not None, "ingest_time")
        check(r["source_ips"] == ["10.0.0.1", "198.51.100.24"] and r["source_ip"] == "198.51.100.24", "source_ip")
        check(r["response_code"] == 403 and r["response_status"] == "Failure"
              and r["response_reason"] == "Forbidden" and r["response_message"] == "no", "responseStatus")
        check(r["impersonated_username"] == "ops" and r["impersonated_groups"] == ["ops-team"], "impersonation")
        check(json.loads(r["request_object"]) == {"kind": "RoleBinding", "subjects": [{"name": "bob"}]},
              "request_object")
        check(r["response_object"] is None, "response_object")
        check(r["authz_decision"] == "allow" and r["authz_reason"] == "RBAC: allowed", "authz")
        check(dict(r["annotations"])["authorization.k8s.io/decision"] == "allow", "annotations map")
        check(r["aws_access_key_id"] == "ASIAEKS3"
              and r["aws_arn"] == f"arn:aws:sts::{OTHER}:assumed-role/eks-admin/alice@example.com"
              and r["aws_role_arn"] == f"arn:aws:iam::{OTHER}:role/eks-admin"
              and r["aws_session_name"] == "alice@example.com"
              and r["aws_principal_id"] == "AROAEXAMPLE", "aws_* columns")
        check(dict(r["user_extra"])["accessKeyId"] == ["ASIAEKS3"], "user_extra")
        check(r["parse_status"] == "ok" and r["raw_message"] is None, "parse ok")

        sa = rows["a-sa"]
        check(dict(sa["user_extra"])["odd"] == ["scalar"], "scalar extra becomes a list")
        check(dict(sa["annotations"])["n"] == "3" and sa["authz_decision"] == "forbid", "non-string annotation")
        check(rows["a-other-cluster"]["region"] == "us-east-1", "region falls back to the event's")
        bad = rows["a-badgroup"]
        check(bad["account_id"] == "notanaccount" and bad["cluster"] == "_invalid_"
              and bad["log_group"] == "/aws/eks/../evil/cluster", "invalid stamps")

        trunc = rows["a-trunc"]
        check(trunc["parse_status"] == "truncated" and trunc["raw_message"].endswith("[Truncated...]"), "truncated")
        check(trunc["verb"] == "list" and trunc["aws_access_key_id"] == "ASIAEKS3", "recovered fields")
        inv = rows["not json at all"]
        check(inv["parse_status"] == "invalid" and inv["audit_id"] is None, "invalid")
        check(inv["event_time"].isoformat().startswith("2024-11-26T13:07:07"), "invalid: CWL timestamp")

        st = summary["rows_by_status"]
        check(st == {"resolved": 11, "pending": 4, "not_applicable": 7}, f"rows_by_status {st}")
        check(summary["rows_by_parse_status"] == {"ok": 20, "truncated": 1, "invalid": 1}, "parse status")
        check(summary["records_failed"] == 3 and summary["records_dropped"] == 1, "record counts")
        check(summary["log_events_skipped"] == 2, "authenticator events skipped")

        # The repository's golden Firehose fixture, when present: every record gets the
        # result DESIGN section 3 asks for (CloudTrail records are Ok; the peer skips them).
        golden = handler.REPO / "tests" / "fixtures" / "firehose-golden.json"
        names = handler.REPO / "tests" / "fixtures" / "firehose-golden.names.json"
        if golden.exists() and names.exists():
            h = handler.Handler({}, tmp / "golden")
            gresp, gres = h.handle(json.loads(golden.read_text()))
            results = {n: r["result"] for n, r in zip(json.loads(names.read_text()),
                                                      json.loads(gresp)["records"])}
            print("golden fixture:", json.dumps(results), json.dumps(gres["rows_by_parse_status"]))
            for n in ("ok-audit", "multi-member", "cloudtrail", "hostile"):
                check(results[n] == "Ok", f"golden {n}: {results[n]}")
            check(results["control"] == "Dropped", "golden control")
            for n in ("not-gzip", "truncated-gzip", "corrupt-gzip", "not-json", "no-owner"):
                check(results[n] == "ProcessingFailed", f"golden {n}: {results[n]}")
    print("selftest: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
