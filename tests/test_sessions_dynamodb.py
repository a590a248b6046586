"""The DynamoDB session index (issue #12) on moto_server, through the real aws-sdk
clients of the `auditlake` binary: the store contract (also for the S3 lake store),
unprocessed items retried, the TTL attribute, failure behaviour, and the Kinesis ->
consume -> lake run with the DynamoDB store attributing exactly as the S3 store does."""
from __future__ import annotations

import http.server
import json
import threading
import urllib.request
import zlib

import pytest

import events as E
import lakesql
from support import run
from test_consume import CENTRAL, Org, assert_exactly_once, consume

TABLE = "eks-audit-lake-sessions"
TTL_MARGIN_S = 7 * 24 * 3600


def create_table(ddb, name=TABLE):
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}])
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})


def counts(line: str) -> dict:
    words = line.replace("(", " ").replace(")", " ").replace(",", " ").split()
    return {w: int(words[i + 1]) for i, w in enumerate(words[:-1]) if words[i + 1].isdigit()}


def test_the_store_contract_on_dynamodb_and_s3_with_unprocessed_items_retried(auditlake, moto):
    ddb = moto.client("dynamodb")
    create_table(ddb, "contract-plain")
    create_table(ddb, "contract-injected")
    plain = run([auditlake, "store-contract", "--table", "contract-plain"], env=moto.env()).stdout.decode()
    assert plain.startswith("contract kept: dynamodb")
    # every batch response of the next three leaves its last item unprocessed: the store
    # sends it again (with backoff) and the contract still holds
    injected = run([auditlake, "store-contract", "--table", "contract-injected", "--inject-unprocessed", "3"],
                   env=moto.env()).stdout.decode()
    a, b = counts(plain), counts(injected)
    assert b["BatchWriteItem"] + b["BatchGetItem"] == a["BatchWriteItem"] + a["BatchGetItem"] + 3, (plain, injected)
    assert b["written"] == a["written"] and b["read"] == a["read"]
    moto.client("s3").create_bucket(Bucket="contract-lake")
    lake = run([auditlake, "store-contract", "--lake", "s3://contract-lake/p"], env=moto.env()).stdout.decode()
    assert lake.startswith("contract kept: lake")


def trail_and_audit():
    key = "ASIADDB0000000000001"
    trail = E.assume_role("2024-11-26T13:00:00Z", "111122223333", E.iam_user("111122223333", "jdoe"),
                          "arn:aws:iam::111122223333:role/ops", "jdoe", key, event_id="ddb-1")
    audit = E.audit_envelope("111122223333", "prod", [E.audit_event("d-1", "2024-11-26T13:30:00Z",
                             "arn:aws:sts::111122223333:assumed-role/ops/jdoe", E.assumed_extra("111122223333", "ops", "jdoe", key))])
    return trail, audit


def event_file(payload, tmp_path):
    p = tmp_path / f"ev-{len(list(tmp_path.glob('ev-*')))}.json"
    p.write_text(json.dumps(E.firehose_event([E.gz(payload)])))
    return p


def invoke(auditlake, payload, lake, tmp_path, env, check=True):
    """`payload` is bytes (a new Firehose event) or the path of an event file (a retry)."""
    p = payload if not isinstance(payload, bytes) else event_file(payload, tmp_path)
    return run([auditlake, "invoke", "--event", p, "--lake", lake], env=env, check=check)


def test_items_carry_a_ttl_and_the_lake_keeps_no_index(auditlake, moto, tmp_path):
    ddb = moto.client("dynamodb")
    create_table(ddb)
    env = dict(moto.env(), AUDITLAKE_SESSION_TABLE=TABLE)
    trail, audit = trail_and_audit()
    lake = tmp_path / "lake"
    invoke(auditlake, E.trail_envelope([trail]), lake, tmp_path, env)
    invoke(auditlake, audit, lake, tmp_path, env)
    items = ddb.scan(TableName=TABLE)["Items"]
    kinds = sorted(i["pk"]["S"].split("#")[0] for i in items)
    assert kinds == ["K", "R"]
    session = json.loads(zlib.decompress(items[0]["s"]["B"], -15))
    assert all(len(i["s"]["B"]) + 120 < 1024 for i in items), "one write unit per item"
    for i in items:
        assert int(i["expires_at"]["N"]) == (session["expiration_ms"] + TTL_MARGIN_S * 1000) // 1000
    assert ddb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    assert not (lake / "session_index").exists()
    row = lakesql.rows(lakesql.connect(lake), "SELECT principal_name, attribution_status FROM eks_audit")
    assert row == [{"principal_name": "jdoe", "attribution_status": "resolved"}]


def test_an_unreachable_table_fails_the_invocation_and_a_retry_loses_nothing(auditlake, moto, tmp_path):
    ddb = moto.client("dynamodb")
    create_table(ddb)
    trail, audit = trail_and_audit()
    lake = tmp_path / "lake"
    down = dict(moto.env(), AUDITLAKE_SESSION_TABLE=TABLE, AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:9", AWS_MAX_ATTEMPTS="1")
    batch = event_file(E.trail_envelope([trail]), tmp_path)
    r = invoke(auditlake, batch, lake, tmp_path, down, check=False)
    err = r.stderr.decode()
    assert r.returncode == 1 and "DynamoDB" in err and len([l for l in err.splitlines() if l.startswith("auditlake:")]) == 1, err
    missing = dict(moto.env(), AUDITLAKE_SESSION_TABLE="no-such-table")
    r = invoke(auditlake, batch, lake, tmp_path, missing, check=False)
    assert r.returncode == 1 and b"ResourceNotFoundException" in r.stderr, r.stderr
    # Firehose retries the same batch once the table answers (twice here): each row once
    up = dict(moto.env(), AUDITLAKE_SESSION_TABLE=TABLE)
    invoke(auditlake, batch, lake, tmp_path, up)
    invoke(auditlake, batch, lake, tmp_path, up)
    invoke(auditlake, audit, lake, tmp_path, up)
    con = lakesql.connect(lake)
    assert lakesql.rows(con, "SELECT count(*) AS n FROM sts_sessions")[0]["n"] == 1
    assert lakesql.rows(con, "SELECT principal_name FROM eks_audit") == [{"principal_name": "jdoe"}]


class AccountProxy:
    """An HTTP proxy to moto that sends every DynamoDB request as one account (moto keys
    tables by the caller's account; in AWS the consumers share the central table)."""

    def __init__(self, target: str, account: str):
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                req = urllib.request.Request(target + self.path, data=body, method="POST")
                for k, v in self.headers.items():
                    if k.lower() not in ("host", "content-length"):
                        req.add_header(k, v)
                req.add_header("x-moto-account-id", account)
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        status, data, headers = r.status, r.read(), r.headers
                except urllib.error.HTTPError as e:
                    status, data, headers = e.code, e.read(), e.headers
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        outer.stop = self.server.shutdown


def test_kinesis_to_lake_with_the_dynamodb_store_attributes_as_the_s3_store(auditlake, moto, tmp_path):
    org = Org(moto)
    create_table(org.client("dynamodb", CENTRAL))
    proxy = AccountProxy(moto.url, CENTRAL)
    try:
        trail, expected, msgs = org.people_events()
        org.put_all(trail, msgs)
        env = {"AUDITLAKE_SESSION_TABLE": TABLE, "AWS_ENDPOINT_URL_DYNAMODB": proxy.url}
        for acct in (CENTRAL, *sorted({a for a, _ in expected})):
            consume(auditlake, org, acct, env=env)
    finally:
        proxy.stop()
    lake = tmp_path / "lake"
    keys = org.download_lake(lake)
    assert not [k for k in keys if k.startswith("session_index/")], "the DynamoDB store writes no index objects"
    assert_exactly_once(lake, expected)
    # resolved at ingest (not by the view): the member accounts' consumers found the
    # sessions the central one indexed, in DynamoDB
    con = lakesql.connect(lake)
    at_ingest = lakesql.rows(con, "SELECT attribution_status, count(*) AS n FROM eks_audit WHERE username LIKE 'arn:%' GROUP BY 1")
    assert [r["attribution_status"] for r in at_ingest] == ["resolved"], at_ingest
    items = org.client("dynamodb", CENTRAL).scan(TableName=TABLE)["Items"]
    assert len([i for i in items if i["pk"]["S"].startswith("K#")]) == 3
