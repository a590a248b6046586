#!/usr/bin/env python3
"""Self-test of the lean Python peer (run by tests/test_bench_peers.py).

    ~/.cache/eks-audit-lake/bench-venv/bin/python bench/peer/lean_selftest.py
    taskset -c 0 ~/.cache/eks-audit-lake/bench-venv/bin/python bench/peer/lean_selftest.py --bench 3

Without options it builds a small Firehose event in a temporary directory, runs lean.py
through its CLI, reads the Parquet back with pyarrow and checks the rows, the types, the
partitions, the sort order and the Firehose response.

With `--bench MB` it instead builds a batch of about MB megabytes of compressed records
with the same event mix as `auditlake/src/bin/bench.rs` (100 events per record, three
accounts, four clusters), runs lean.py on it and prints the MB/s of decompressed
CloudWatch Logs JSON. Pin it yourself (`taskset -c 0`); the child inherits the mask.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
LEAN = HERE / "lean.py"

ACCT = "111122223333"
OTHER = "444455556666"

COLUMNS = [
    ("event_time", pa.timestamp("ms", tz="UTC")),
    ("account_id", pa.string()),
    ("cluster", pa.string()),
    ("log_stream", pa.string()),
    ("audit_id", pa.string()),
    ("stage", pa.string()),
    ("verb", pa.string()),
    ("request_uri", pa.string()),
    ("user_username", pa.string()),
    ("source_ip", pa.string()),
    ("user_agent", pa.string()),
    ("object_resource", pa.string()),
    ("object_namespace", pa.string()),
    ("response_code", pa.int32()),
]
SCHEMA = pa.schema(COLUMNS)


def gz(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def envelope(owner, group, stream, messages, ts=1732626427000, kind="DATA_MESSAGE") -> bytes:
    events = [{"id": str(38480917865042697267627490045603633139480491071049695232 + i),
               "timestamp": ts + i, "message": m} for i, m in enumerate(messages)]
    return json.dumps({"messageType": kind, "owner": owner, "logGroup": group,
                       "logStream": stream, "subscriptionFilters": ["f"],
                       "logEvents": events}).encode()


def audit(audit_id, at, username, **kw) -> str:
    ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
          "auditID": audit_id, "stage": "ResponseComplete",
          "requestURI": "/api/v1/namespaces/payments/pods", "verb": "list",
          "user": {"username": username, "uid": "u-" + audit_id, "groups": ["system:authenticated"]},
          "sourceIPs": ["10.0.0.1", "198.51.100.24"], "userAgent": "kubectl/v1.31.2",
          "objectRef": {"resource": "pods", "namespace": "payments", "apiVersion": "v1"},
          "responseStatus": {"metadata": {}, "code": 200},
          "requestReceivedTimestamp": at, "stageTimestamp": at}
    for k, v in kw.items():
        if v is None:
            ev.pop(k, None)
        else:
            ev[k] = v
    return json.dumps(ev, separators=(",", ":"))


def ms(s: str) -> int:
    """Epoch ms of an ISO timestamp, computed independently of lean.py."""
    dt = datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * 1000 + dt.microsecond // 1000


def build_event(tmp: Path):
    """The small event: records and the rows lean.py must write, per partition."""
    # member 1: prod in OTHER, out of time order, one of them on the next UTC day
    prod = [
        audit("a-3", "2024-11-26T13:07:09.461999Z", "system:kube-controller-manager",
              verb="update", objectRef={"resource": "leases", "namespace": "kube-system"},
              requestURI="/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kcm"),
        audit("a-1", "2024-11-26T13:07:01.000417Z", "arn:aws:sts::444455556666:assumed-role/eks-admin/alice",
              responseStatus={"code": 403, "status": "Failure"}, sourceIPs=["198.51.100.7"]),
        audit("a-day2", "2024-11-27T00:00:00.000999Z", "system:anonymous", verb="get",
              requestURI="/readyz", objectRef=None, userAgent=None, sourceIPs=[]),
    ]
    # member 2: dev_1 in ACCT; a missing requestReceivedTimestamp falls back to the CWL
    # timestamp; b-2 is in the same second as b-1 (the cached path)
    dev = [
        audit("b-1", "2024-11-26T13:07:05.123456Z", "system:serviceaccount:ci:deployer",
              verb="create", responseStatus={"metadata": {}, "code": 201}, stage="ResponseStarted"),
        audit("b-cwl-time", None, "bob", requestReceivedTimestamp=None, responseStatus=None,
              user=None, sourceIPs=None, objectRef={"resource": "secrets"}),
        audit("b-2", "2024-11-26T13:07:05.099999Z", "carol", objectRef={"resource": "pods", "namespace": "ci"}),
    ]
    dev_ts = 1732626420000
    env_prod = envelope(OTHER, "/aws/eks/prod/cluster", "kube-apiserver-audit-0a1b", prod)
    env_dev = envelope(ACCT, "/aws/eks/dev_1/cluster", "kube-apiserver-audit-ff", dev, ts=dev_ts)
    control = envelope("CloudwatchLogs", "log_group_name", "log_stream_name",
                       ["CWL CONTROL MESSAGE"], kind="CONTROL_MESSAGE")
    records = [
        ("r-multi", gz(env_prod) + gz(env_dev)),     # two gzip members, 3 events each
        ("r-control", gz(control)),
        ("r-bad-base64", None),                      # not base64 at all
    ]
    data = {rid: base64.b64encode(b).decode() if b is not None else "!!not base64!!"
            for rid, b in records}
    event = {"invocationId": "inv-1", "region": "us-east-1",
             "records": [{"recordId": rid, "approximateArrivalTimestamp": 1732626428123,
                          "data": data[rid]} for rid, _ in records]}
    ev_path = tmp / "event.json"
    ev_path.write_text(json.dumps(event))

    def row(aid, t, acct, cluster, stream, user, ip, verb="list", stage="ResponseComplete",
            uri="/api/v1/namespaces/payments/pods", ua="kubectl/v1.31.2",
            res="pods", ns="payments", code=200):
        return {"event_time": t, "account_id": acct, "cluster": cluster, "log_stream": stream,
                "audit_id": aid, "stage": stage, "verb": verb, "request_uri": uri,
                "user_username": user, "source_ip": ip, "user_agent": ua,
                "object_resource": res, "object_namespace": ns, "response_code": code}

    ps, ds = "kube-apiserver-audit-0a1b", "kube-apiserver-audit-ff"
    expect = {
        f"dt=2024-11-26/{OTHER}/prod": [
            row("a-1", ms("2024-11-26T13:07:01.000417Z"), OTHER, "prod", ps,
                "arn:aws:sts::444455556666:assumed-role/eks-admin/alice", "198.51.100.7", code=403),
            row("a-3", ms("2024-11-26T13:07:09.461999Z"), OTHER, "prod", ps,
                "system:kube-controller-manager", "10.0.0.1", verb="update",
                uri="/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kcm",
                res="leases", ns="kube-system"),
        ],
        f"dt=2024-11-27/{OTHER}/prod": [
            row("a-day2", ms("2024-11-27T00:00:00.000999Z"), OTHER, "prod", ps,
                "system:anonymous", None, verb="get", uri="/readyz", ua=None, res=None, ns=None),
        ],
        f"dt=2024-11-26/{ACCT}/dev_1": [
            row("b-cwl-time", dev_ts + 1, ACCT, "dev_1", ds, None, None, res="secrets", ns=None,
                code=None),
            row("b-2", ms("2024-11-26T13:07:05.099999Z"), ACCT, "dev_1", ds, "carol", "10.0.0.1",
                ns="ci"),
            row("b-1", ms("2024-11-26T13:07:05.123456Z"), ACCT, "dev_1", ds,
                "system:serviceaccount:ci:deployer", "10.0.0.1", verb="create",
                stage="ResponseStarted", code=201),
        ],
    }
    decompressed = len(env_prod) + len(env_dev) + len(control)
    results = {"r-multi": "Ok", "r-control": "Dropped", "r-bad-base64": "ProcessingFailed"}
    return ev_path, expect, results, decompressed


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def run_lean(ev_path: Path, out: Path, repeat: int, resp_path: Path | None = None) -> dict:
    cmd = [sys.executable, str(LEAN), "--event", str(ev_path), "--out", str(out),
           "--repeat", str(repeat)]
    if resp_path is not None:
        cmd += ["--response", str(resp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"lean.py exited {proc.returncode}: {proc.stderr}")
    lines = proc.stdout.strip().splitlines()
    check(len(lines) == 1, f"one stdout line, got {lines}")
    return json.loads(lines[0])


def selftest() -> int:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ev_path, expect, results, decompressed = build_event(tmp)
        out = tmp / "lake"
        resp_path = tmp / "response.json"
        summary = run_lean(ev_path, out, 3, resp_path)
        print(json.dumps(summary))
        check(summary["impl"] == "python-lean" and summary["repeats"] == 3, "summary header")
        check(0 < summary["seconds_best"] <= summary["seconds_median"], "best <= median")
        check(summary["records"] == 3, "records")
        check((summary["records_ok"], summary["records_dropped"], summary["records_failed"])
              == (1, 1, 1), "record counts")
        check(summary["events"] == 6, f"events {summary['events']}")
        check(summary["columns"] == 14, "columns")
        check(summary["decompressed_bytes"] == decompressed,
              f"decompressed_bytes {summary['decompressed_bytes']} != {decompressed}")

        # Firehose response: one entry per record, in order, data echoed back.
        resp = json.loads(resp_path.read_text())
        check(list(resp) == ["records"], "response keys")
        src = json.loads(ev_path.read_text())["records"]
        check([r["recordId"] for r in resp["records"]] == [r["recordId"] for r in src], "record ids")
        for r, s in zip(resp["records"], src):
            check(set(r) == {"recordId", "result", "data"}, f"{r['recordId']}: keys")
            check(r["result"] == results[r["recordId"]], f"{r['recordId']}: {r['result']}")
            check(r["data"] == s["data"], f"{r['recordId']}: data not echoed")

        # Partitions: one file per (dt, account, cluster), overwritten by each repeat.
        base = out / "eks_audit_lean"
        files = sorted(p.relative_to(base).as_posix() for p in base.rglob("*.parquet"))
        check(files == sorted(f"{k}/part-0.parquet" for k in expect), f"partitions {files}")
        check(summary["parquet_bytes"] == sum(p.stat().st_size for p in base.rglob("*.parquet")),
              "parquet_bytes")

        for part, want in expect.items():
            pf = pq.ParquetFile(base / part / "part-0.parquet")
            check(pf.schema_arrow.equals(SCHEMA), f"{part}: schema {pf.schema_arrow}")
            check(pf.metadata.row_group(0).column(0).compression == "ZSTD", f"{part}: zstd")
            table = pf.read()
            got = table.to_pylist()
            for r in got:
                r["event_time"] = int(r["event_time"].timestamp() * 1000 + 0.5)
            times = [r["event_time"] for r in got]
            check(times == sorted(times), f"{part}: sorted by event_time")
            for g, w in zip(got, want):
                check(g == w, f"{part}: row\n  got  {g}\n  want {w}")
            check(len(got) == len(want), f"{part}: {len(got)} rows, want {len(want)}")
        # ms truncation, not rounding: .461999 -> .461
        t = pq.read_table(base / f"dt=2024-11-26/{OTHER}/prod/part-0.parquet").column("event_time")
        check(t[1].as_py().isoformat() == "2024-11-26T13:07:09.461000+00:00", "event_time truncated to ms")

        # Failure paths, one record each: truncated gzip, corrupt gzip, not JSON, not an
        # envelope, envelope without logEvents, a member followed by garbage.
        good = gz(envelope(OTHER, "/aws/eks/prod/cluster", "kube-apiserver-audit-0a1b",
                           [audit("c-1", "2024-11-26T13:07:01.000417Z", "x")]))
        corrupt = bytearray(good)
        corrupt[len(corrupt) // 2] ^= 0xFF
        bad = {
            "truncated": good[:-9],
            "corrupt": bytes(corrupt),
            "not-json": gz(b"plain text"),
            "not-envelope": gz(b'{"hello":"world"}'),
            "no-events": gz(b'{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s"}'),
            "trailing-garbage": good + b"garbage!",
        }
        ok = {
            # two envelopes back to back in one member (the stdlib fallback)
            "two-docs": gz(envelope(OTHER, "/aws/eks/prod/cluster", "kube-apiserver-audit-0a1b",
                                    [audit("d-1", "2024-11-26T13:07:01.000417Z", "x")])
                           + b"\n" + envelope(OTHER, "/aws/eks/prod/cluster", "kube-apiserver-audit-0a1b",
                                              [audit("d-2", "2024-11-26T13:07:02.000417Z", "x")])),
            # other log groups and streams are Ok with no rows; a broken message is skipped
            "cloudtrail": gz(envelope(OTHER, "aws-cloudtrail-logs", "s", ['{"eventName":"x"}'])),
            "authenticator": gz(envelope(OTHER, "/aws/eks/prod/cluster", "authenticator-abc", ["time=..."])),
            "broken-message": gz(envelope(OTHER, "/aws/eks/prod/cluster", "kube-apiserver-audit-0a1b",
                                          ['{"auditID":"e-1", "verb": [Truncated...]', "7", '{"user":"str"}'])),
            # fields of the wrong type become null, a bad timestamp takes the CWL one
            "odd-types": gz(envelope(ACCT, "/aws/eks/odd/cluster", "kube-apiserver-audit-2", [
                audit("o-1", "2024-11-26T13:07:0x.461683Z", "x", verb=5, sourceIPs="10.0.0.9",
                      responseStatus={"code": "200"}),
                audit("o-2", "2024-11-26T13:07:03.461683+00:00", ["x"], responseStatus={"code": 1 << 40}),
                audit("o-3", "2024-11-26T13:07:03.461683", "y"),  # no offset: the CWL time
            ], ts=1732626400000)),
            # a hostile log group must not escape the lake directory
            "hostile": gz(envelope("../../x", "/aws/eks/../../evil/cluster", "kube-apiserver-audit-1",
                                   [audit("h-1", "2024-11-26T13:07:01.000417Z", "x")])),
        }
        ev2 = {"records": [{"recordId": k, "data": base64.b64encode(v).decode()}
                           for k, v in {**bad, **ok}.items()]}
        ev2_path = tmp / "event2.json"
        ev2_path.write_text(json.dumps(ev2))
        out2 = tmp / "lake2"
        s2 = run_lean(ev2_path, out2, 1, tmp / "response2.json")
        print(json.dumps(s2))
        resp2 = {r["recordId"]: r["result"] for r in json.loads((tmp / "response2.json").read_text())["records"]}
        for k in bad:
            check(resp2[k] == "ProcessingFailed", f"{k}: {resp2[k]}")
        for k in ok:
            check(resp2[k] == "Ok", f"{k}: {resp2[k]}")
        check(s2["events"] == 6 and s2["events_skipped"] == 5, f"events {s2['events']} skipped {s2['events_skipped']}")
        files2 = sorted(p.relative_to(out2).as_posix() for p in out2.rglob("*.parquet"))
        check(files2 == [f"eks_audit_lean/dt=2024-11-26/{ACCT}/odd/part-0.parquet",
                         "eks_audit_lean/dt=2024-11-26/444455556666/prod/part-0.parquet",
                         "eks_audit_lean/dt=2024-11-26/_invalid_/_invalid_/part-0.parquet"],
              f"partitions {files2}")
        hostile = pq.read_table(out2 / "eks_audit_lean/dt=2024-11-26/_invalid_/_invalid_/part-0.parquet")
        check(hostile.column("account_id").to_pylist() == ["../../x"]
              and hostile.column("cluster").to_pylist() == ["_invalid_"], "hostile stamps")
        odd = pq.read_table(out2 / f"eks_audit_lean/dt=2024-11-26/{ACCT}/odd/part-0.parquet")
        check(odd.schema.equals(SCHEMA), "odd: schema")
        o1, o3, o2 = odd.to_pylist()
        check(o3["audit_id"] == "o-3" and o3["event_time"].timestamp() == 1732626400.002, "naive timestamp: CWL time")
        check(o1["audit_id"] == "o-1" and o1["event_time"].timestamp() == 1732626400.0, "bad timestamp: CWL time")
        check(o1["verb"] is None and o1["source_ip"] is None and o1["response_code"] is None, "odd types: null")
        check(o2["event_time"].isoformat() == "2024-11-26T13:07:03.461000+00:00", "offset timestamp")
        check(o2["user_username"] is None and o2["response_code"] is None and o2["verb"] == "list",
              "odd types: null, others kept")
        two = pq.read_table(out2 / "eks_audit_lean/dt=2024-11-26/444455556666/prod/part-0.parquet")
        check(two.column("audit_id").to_pylist() == ["d-1", "d-2"], "two documents in one member")
    print("lean selftest: ok")
    return 0


# --------------------------------------------------------------------------------------
# --bench: a batch with the event mix of auditlake/src/bin/bench.rs


class Rng:
    """xorshift64, as in bench.rs."""

    M = (1 << 64) - 1

    def __init__(self, seed: int):
        self.s = seed & self.M

    def next(self) -> int:
        s = self.s
        s ^= (s << 13) & self.M
        s ^= s >> 7
        s ^= (s << 17) & self.M
        self.s = s
        return s

    def below(self, n: int) -> int:
        return self.next() % n

    def uuid(self) -> str:
        a, b = self.next(), self.next()
        return (f"{a >> 32:08x}-{(a >> 16) & 0xffff:04x}-4{a & 0xfff:03x}-"
                f"a{b >> 52:03x}-{b & 0xffff_ffff_ffff:012x}")


T0 = 1_795_161_600_000
ACCOUNTS = ["222222222222", "333333333333", "444444444444"]
CLUSTERS = ["prod-east", "prod-west", "staging", "ci-tools"]


def iso(ms_: int) -> str:
    secs, rem = divmod(ms_, 1000)
    dt = datetime.fromtimestamp(secs, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{rem * 1000 + 417:06d}Z"


def pod_spec(rng: Rng, privileged: bool) -> dict:
    containers = []
    for i in range(2 + rng.below(2)):
        containers.append({
            "name": f"c{i}",
            "image": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/svc-{rng.below(40)}:1.{rng.below(99)}",
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "env": [{"name": f"ENV_{e}", "value": f"value-{rng.below(1000)}"} for e in range(8)],
            "resources": {"limits": {"cpu": "500m", "memory": "512Mi"},
                          "requests": {"cpu": "100m", "memory": "128Mi"}},
            "securityContext": {"privileged": privileged, "runAsNonRoot": not privileged,
                                "readOnlyRootFilesystem": True},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/config"},
                             {"name": "kube-api-access",
                              "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                              "readOnly": True}]})
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": f"web-{rng.uuid()}", "namespace": "payments",
                         "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5"},
                         "annotations": {"kubectl.kubernetes.io/restartedAt": iso(T0)}},
            "spec": {"containers": containers, "serviceAccountName": "web",
                     "nodeName": "ip-10-0-12-7.ec2.internal",
                     "volumes": [{"name": "config", "configMap": {"name": "web-config"}},
                                 {"name": "kube-api-access", "projected": {"sources": [
                                     {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}]}}


def bench_event(rng: Rng, at: int) -> str:
    roll = rng.below(100)

    def sys_user(u):
        return {"username": u, "uid": "0b1c", "groups": ["system:authenticated"]}

    req = resp = None
    if roll <= 34:
        level, verb, uri = "Metadata", "update", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager"
        user = sys_user("system:kube-controller-manager")
        obj = {"resource": "leases", "namespace": "kube-system", "name": "kube-controller-manager",
               "apiGroup": "coordination.k8s.io", "apiVersion": "v1"}
        code = 200
    elif roll <= 49:
        level, verb, uri = "Request", "patch", "/api/v1/nodes/ip-10-0-12-7.ec2.internal/status?timeout=10s"
        user = sys_user("system:node:ip-10-0-12-7.ec2.internal")
        obj = {"resource": "nodes", "name": "ip-10-0-12-7.ec2.internal", "subresource": "status", "apiVersion": "v1"}
        code = 200
        req = {"status": {"conditions": [
            {"type": "Ready", "status": "True", "lastHeartbeatTime": iso(at)},
            {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": iso(at)}]}}
    elif roll <= 64:
        level, verb, uri = "Metadata", "get", "/readyz"
        user = {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
        obj, code = None, 200
    elif roll <= 74:
        level, verb, uri = "Metadata", "list", "/api/v1/pods?fieldSelector=spec.nodeName%3Dip-10-0-12-7.ec2.internal"
        user = {"username": "system:serviceaccount:kube-system:aws-node", "uid": "6a7b",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
                "extra": {"authentication.kubernetes.io/credential-id": ["JTI=3f2e1d0c"],
                          "authentication.kubernetes.io/pod-name": ["aws-node-7xk2p"]}}
        obj, code = {"resource": "pods", "apiVersion": "v1"}, 200
    elif roll <= 84:
        p = rng.below(50)
        acct = ACCOUNTS[p % 3]
        key = f"ASIABENCHROLE{p:07d}"
        arn = f"arn:aws:sts::{acct}:assumed-role/eks-admin/person{p}"
        user = {"username": arn, "uid": f"aws-iam-authenticator:{acct}:AROAX",
                "groups": ["system:authenticated"],
                "extra": {"accessKeyId": [key], "arn": [arn],
                          "canonicalArn": [f"arn:aws:iam::{acct}:role/eks-admin"],
                          "principalId": ["AROAX"], "sessionName": [f"person{p}"]}}
        level, verb, uri = "Metadata", "list", "/api/v1/namespaces/payments/pods?limit=500"
        obj, code = {"resource": "pods", "namespace": "payments", "apiVersion": "v1"}, 200
    elif roll <= 92:
        level, verb, uri = "Metadata", "get", "/api/v1/namespaces/payments/secrets/db-credentials"
        user = sys_user("system:serviceaccount:payments:api")
        obj = {"resource": "secrets", "namespace": "payments", "name": "db-credentials", "apiVersion": "v1"}
        code = 200
    elif roll <= 97:
        spec = pod_spec(rng, roll == 97)
        level, verb, uri = "RequestResponse", "create", "/api/v1/namespaces/payments/pods"
        user = sys_user("system:serviceaccount:kube-system:replicaset-controller")
        obj, code, req, resp = {"resource": "pods", "namespace": "payments", "apiVersion": "v1"}, 201, spec, spec
    else:
        rb = {"kind": "RoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
              "metadata": {"name": f"rb-{rng.below(1000)}", "namespace": "payments"},
              "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob"},
                           {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"}],
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}}
        level, verb = "RequestResponse", "create"
        uri = "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/rolebindings?fieldManager=kubectl-client-side-apply"
        user = sys_user("system:serviceaccount:argocd:argocd-application-controller")
        obj = {"resource": "rolebindings", "namespace": "payments", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"}
        code, req, resp = 201, rb, rb
    ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level, "auditID": rng.uuid(),
          "stage": "ResponseComplete", "requestURI": uri, "verb": verb, "user": user,
          "sourceIPs": ["10.0.12.7"],
          "userAgent": "kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/leader-election",
          "responseStatus": {"metadata": {}, "code": code}, "requestReceivedTimestamp": iso(at),
          "stageTimestamp": iso(at + 3),
          "annotations": {"authorization.k8s.io/decision": "allow",
                          "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"system:kube-controller-manager\" of ClusterRole \"system:kube-controller-manager\" to User \"system:kube-controller-manager\""}}
    if obj is not None:
        ev["objectRef"] = obj
    if req is not None:
        ev["requestObject"] = req
    if resp is not None:
        ev["responseObject"] = resp
    return json.dumps(ev, separators=(",", ":"))


def bench_batch(target: int, seed: int):
    """Firehose event of records of 100 events until `target` compressed bytes."""
    rng = Rng(seed)
    records, compressed, events, n = [], 0, 0, 0
    while compressed < target:
        acct, cluster = ACCOUNTS[n % 3], CLUSTERS[n % 4]
        log_events = []
        for i in range(100):
            at = T0 + n * 1000 + i * 7
            log_events.append({"id": f"3848091786504269726762749004560363313948049107104{n * 100 + i:07d}",
                               "timestamp": at, "message": bench_event(rng, at),
                               "extractedFields": {"@aws.account": acct, "@aws.region": "us-east-1"}})
        env = {"messageType": "DATA_MESSAGE", "owner": acct, "logGroup": f"/aws/eks/{cluster}/cluster",
               "logStream": "kube-apiserver-audit-0a1b2c3d4e5f60718293a4b5c6d7e8f9",
               "subscriptionFilters": ["org-audit"], "logEvents": log_events,
               "policyLevel": "ACCOUNT_LEVEL_POLICY"}
        data = gzip.compress(json.dumps(env, separators=(",", ":")).encode(), compresslevel=6, mtime=0)
        compressed += len(data)
        events += 100
        records.append({"recordId": f"4965623940571732946301287049827340187364725832981345{n:04d}000000",
                        "data": base64.b64encode(data).decode()})
        n += 1
    return {"invocationId": "bench", "region": "us-east-1", "records": records}, compressed, events


def bench(mb: float, repeat: int, keep: Path | None) -> int:
    with tempfile.TemporaryDirectory() as t:
        tmp = keep or Path(t)
        tmp.mkdir(parents=True, exist_ok=True)
        event, compressed, events = bench_batch(int(mb * (1 << 20)), 0x5EED + int(mb * (1 << 20)))
        ev_path = tmp / "event-bench.json"
        ev_path.write_text(json.dumps(event, separators=(",", ":")))
        s = run_lean(ev_path, tmp / "lake", repeat)
        raw = s["decompressed_bytes"]
        print(json.dumps(s))
        print(f"{len(event['records'])} records, {events} events, {compressed / 1e6:.2f} MB compressed, "
              f"{raw / 1e6:.2f} MB CWL JSON, event file {ev_path.stat().st_size / 1e6:.2f} MB")
        print(f"lean peer: {raw / 1e6 / s['seconds_best']:.1f} MB/s best "
              f"({s['seconds_best'] * 1e3:.1f} ms), {raw / 1e6 / s['seconds_median']:.1f} MB/s median "
              f"({s['seconds_median'] * 1e3:.1f} ms), {events / s['seconds_best']:.0f} events/s")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", type=float, metavar="MB", help="time lean.py on a batch of MB compressed")
    ap.add_argument("--repeat", type=int, default=7, help="repeats for --bench")
    ap.add_argument("--keep", type=Path, help="with --bench: write the event and lake here")
    args = ap.parse_args()
    if args.bench:
        return bench(args.bench, args.repeat, args.keep)
    return selftest()


if __name__ == "__main__":
    sys.exit(main())
