"""The `bootstrap` Lambda binary itself, against a stand-in for the Lambda Runtime API
(the HTTP interface a Lambda sandbox gives a custom runtime:
https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html): the Firehose
transformation, and with AUDITLAKE_FUNCTION=compact the scheduled compaction."""
from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import events as E
import lakesql
from support import auditlake_path, run
from test_lake import _org_batches, invoke


def bootstrap_path():
    return auditlake_path().with_name("bootstrap")


class RuntimeApi:
    """Hands out the queued events one by one, records what the function answers."""

    def __init__(self, events: list[dict]):
        self.events = list(events)
        self.answers: queue.Queue = queue.Queue()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path != "/2018-06-01/runtime/invocation/next":
                    self.send_error(404)
                    return
                if not api.events:
                    time.sleep(30)  # no more work: the test stops the process meanwhile
                    self.send_error(500)
                    return
                ev = api.events.pop(0)
                body = json.dumps(ev).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", f"req-{len(api.events)}")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 900_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:999999999999:function:f")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                kind = self.path.rsplit("/", 1)[-1]  # response | error
                api.answers.put((kind, json.loads(body) if body else None))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()


def start(api: RuntimeApi, env: dict) -> subprocess.Popen:
    full = dict(os.environ)
    full.update({
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": "f", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_STREAM_NAME": "s",
        "AWS_LAMBDA_LOG_GROUP_NAME": "g", "AWS_REGION": "us-east-1",
    })
    full.update(env)
    return subprocess.Popen([str(bootstrap_path())], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def answers(api: RuntimeApi, proc: subprocess.Popen, n: int) -> list:
    got = []
    try:
        for _ in range(n):
            got.append(api.answers.get(timeout=120))
    finally:
        proc.kill()
        out, err = proc.communicate()
        api.close()
    return got, out.decode(), err.decode()


@pytest.fixture(scope="module")
def bootstrap():
    p = bootstrap_path()
    if not p.exists():
        pytest.fail(f"bootstrap binary not found at {p}: build it first (cargo build)")
    return p


def test_the_lambda_transforms_a_firehose_event(bootstrap, tmp_path):
    audit, _ = _org_batches()
    event = E.firehose_event([E.gz(audit), b"not gzip"])
    api = RuntimeApi([event])
    proc = start(api, {"AUDITLAKE_LAKE": str(tmp_path / "lake")})
    [(kind, resp)], out, _ = answers(api, proc, 1)
    assert kind == "response", resp
    results = [r["result"] for r in resp["records"]]
    assert results == ["Ok", "ProcessingFailed"]
    assert [r["recordId"] for r in resp["records"]] == [r["recordId"] for r in event["records"]]
    assert '"_aws"' in out, "one EMF metrics line per invocation"
    assert lakesql.rows(lakesql.connect(tmp_path / "lake"), "SELECT count(*) AS n FROM eks_audit")[0]["n"] > 0


def test_the_compaction_function_runs_scheduled_and_explicit_events(bootstrap, auditlake, tmp_path):
    lake = tmp_path / "lake"
    audit, trail = _org_batches()
    for payload in (audit, audit, trail):
        invoke(auditlake, E.firehose_event([E.gz(payload)]), lake, tmp_path)
    con = lakesql.connect(lake)
    before = lakesql.rows(con, "SELECT count(*) AS n, count(DISTINCT audit_id) AS d FROM eks_audit")[0]
    assert before["n"] == 2 * before["d"]
    api = RuntimeApi([
        {"action": "compact"},                    # the schedule's input: closed days (none here: 2024 is long past the window)
        {"action": "compact", "dt": "2024-11-26"},
        {"action": "compact", "dt": "2024-11-26"},
        {"action": "delete"},
    ])
    proc = start(api, {"AUDITLAKE_FUNCTION": "compact", "AUDITLAKE_LAKE": str(lake), "AUDITLAKE_SCRATCH_DIR": str(tmp_path / "scratch")})
    got, out, err = answers(api, proc, 4)
    (k0, scheduled), (k1, first), (k2, second), (k3, refused) = got
    assert (k0, scheduled["partitions"]) == ("response", 0), scheduled
    assert k1 == "response" and first["compacted"] == first["partitions"] > 0, first
    assert k2 == "response" and second["compacted"] == 0 and second["unchanged"] == first["partitions"], second
    assert k3 == "error" and "this function only compacts" in refused["errorMessage"], refused
    assert "nothing changed" in out and "compacted, files" in out, out
    after = lakesql.rows(lakesql.connect(lake), "SELECT count(*) AS n, count(DISTINCT audit_id) AS d FROM eks_audit")[0]
    assert after == {"n": before["d"], "d": before["d"]}


def test_bad_compaction_settings_fail_the_start_naming_the_variable(bootstrap, tmp_path):
    api = RuntimeApi([])
    proc = start(api, {"AUDITLAKE_FUNCTION": "compact", "AUDITLAKE_LAKE": str(tmp_path), "AUDITLAKE_COMPACT_DAYS": "0"})
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        api.close()
    assert proc.returncode != 0
    assert "AUDITLAKE_COMPACT_DAYS" in err.decode(), err


def test_a_bad_rule_file_fails_the_lambdas_start_naming_the_file_and_the_rule(bootstrap, tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mine.yml").write_text(
        "title: Mine\nid: 7d0c5a7e-0000-4000-8000-000000000001\nname: my_regex_rule\nlevel: high\n"
        "logsource: {product: kubernetes, service: audit}\n"
        "detection:\n  sel:\n    requestURI|re: '^/api/.*exec'\n  condition: sel\n")
    api = RuntimeApi([])
    proc = start(api, {"AUDITLAKE_LAKE": str(tmp_path / "lake"), "AUDITLAKE_RULES": str(rules)})
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        api.close()
    err = err.decode()
    assert proc.returncode != 0
    assert "AUDITLAKE_RULES" in err and "mine.yml" in err and "my_regex_rule" in err and "modifier `re`" in err, err


def test_the_lambda_publishes_alerts_where_configured(bootstrap, tmp_path):
    """A finding at or above the alert severity reaches the alert target (file:// here;
    EventBridge on moto in test_detections.py) from the Lambda itself."""
    ev = json.loads(E.audit_event("b-exec-1", "2024-11-26T13:00:00.000001Z", "kubernetes-admin", stage="ResponseStarted",
                                  verb="create", requestURI="/api/v1/namespaces/kube-system/pods/coredns-1/exec?command=sh",
                                  objectRef={"resource": "pods", "subresource": "exec", "namespace": "kube-system", "name": "coredns-1", "apiVersion": "v1"},
                                  responseStatus={"metadata": {}, "code": 101}))
    event = E.firehose_event([E.gz(E.audit_envelope("111122223333", "prod", [json.dumps(ev)]))])
    api = RuntimeApi([event])
    alerts = tmp_path / "alerts"
    proc = start(api, {"AUDITLAKE_LAKE": str(tmp_path / "lake"), "AUDITLAKE_ALERT_BUS": f"file://{alerts}"})
    [(kind, resp)], _, _ = answers(api, proc, 1)
    assert kind == "response" and [r["result"] for r in resp["records"]] == ["Ok"], resp
    lines = [json.loads(l) for f in alerts.glob("alerts-*.jsonl") for l in f.read_text().splitlines()]
    names = {l["detail"]["rule_name"] for l in lines}
    assert "k8s_exec_into_kube_system_pod" in names, names
    assert all(l["detail-type"] == "EKS Audit Finding" and l["source"] == "eks-audit-lake" for l in lines)
    assert all(l["detail"]["severity"] in ("high", "critical") for l in lines)
