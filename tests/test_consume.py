"""End to end as AWS runs it, on moto_server: CloudWatch Logs log groups in several
accounts with subscription filters to Kinesis, PutLogEvents, `auditlake consume`
(the Firehose stand-in) into an S3 lake, read back with DuckDB.

moto delivers a subscription only to a stream in the log group's own account, so each
account has its own `central-audit` stream and the consumer runs once per stream into
the one lake (in AWS, one stream in the security account receives them all through a
Logs destination; the envelope's `owner` is the sending account either way).
"""
from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import os
import pathlib
import signal
import socket
import subprocess
import threading
import time

import pytest

import events as E
import lakesql
from support import free_port, run

CENTRAL, A, B = "999999999999", "111122223333", "444455556666"
CLUSTERS = {A: ["prod-east"], B: ["dev", "ml"]}
STREAM = "central-audit"
TRAIL_GROUP = "aws-cloudtrail-logs-o-test"


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Org:
    """Accounts, streams, log groups and subscription filters on moto."""

    def __init__(self, moto):
        self.moto = moto
        self.keys = {}
        self.now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=30)
        self.client("s3", CENTRAL).create_bucket(Bucket="audit-lake")
        for acct in [CENTRAL, A, B]:
            k = self.client("kinesis", acct)
            k.create_stream(StreamName=STREAM, ShardCount=2)
            arn = k.describe_stream(StreamName=STREAM)["StreamDescription"]["StreamARN"]
            logs = self.client("logs", acct)
            groups = [TRAIL_GROUP] if acct == CENTRAL else [f"/aws/eks/{c}/cluster" for c in CLUSTERS[acct]]
            for g in groups:
                logs.create_log_group(logGroupName=g)
                logs.put_subscription_filter(logGroupName=g, filterName="to-central", filterPattern="", destinationArn=arn,
                                             roleArn=f"arn:aws:iam::{acct}:role/CWLtoKinesis")
            iam = self.client("iam", acct)
            iam.create_user(UserName="auditlake")
            key = iam.create_access_key(UserName="auditlake")["AccessKey"]
            self.keys[acct] = (key["AccessKeyId"], key["SecretAccessKey"])

    def client(self, service, account):
        c = self.moto.client(service)
        c.meta.events.register("before-sign.*.*", lambda request, **kw: request.headers.__setitem__("x-moto-account-id", account))
        return c

    def put_logs(self, account, group, stream, messages):
        logs = self.client("logs", account)
        try:
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        ts = int(time.time() * 1000)
        for i in range(0, len(messages), 25):
            logs.put_log_events(logGroupName=group, logStreamName=stream,
                                logEvents=[{"timestamp": ts + j, "message": m} for j, m in enumerate(messages[i:i + 25])])

    def env(self, account, **extra):
        k, s = self.keys[account]
        e = dict(self.moto.env(), AWS_ACCESS_KEY_ID=k, AWS_SECRET_ACCESS_KEY=s)
        e.pop("AWS_SESSION_TOKEN", None)
        e.update(extra)
        return e

    def people_events(self, n_per_cluster=40):
        """CloudTrail for each person's session, and audit events that use them.
        Returns (trail events, {(account, cluster): [(audit_id, expected principal)]})."""
        trail, expected, msgs = [], {}, {}
        people = [("alice", A), ("bob", B), ("carol", B)]
        for i, (person, acct) in enumerate(people):
            key = f"ASIA{person.upper()}{'0' * (16 - len(person))}"
            trail.append(E.assume_role(iso(self.now), acct, E.iam_user(CENTRAL, person), f"arn:aws:iam::{acct}:role/eks-ops",
                                       person, key, event_id=f"sts-{person}"))
        for acct, clusters in CLUSTERS.items():
            for c in clusters:
                ids = []
                for j in range(n_per_cluster):
                    aid = f"{acct}-{c}-{j:04d}"
                    at = iso(self.now + dt.timedelta(minutes=5, seconds=j))
                    if j % 4 == 0:
                        msgs.setdefault((acct, c), []).append(E.audit_event(aid, at, "system:anonymous"))
                        ids.append((aid, "system:anonymous"))
                    else:
                        person = "alice" if acct == A else ("bob" if j % 2 else "carol")
                        key = f"ASIA{person.upper()}{'0' * (16 - len(person))}"
                        msgs.setdefault((acct, c), []).append(
                            E.audit_event(aid, at, f"arn:aws:sts::{acct}:assumed-role/eks-ops/{person}", E.assumed_extra(acct, "eks-ops", person, key)))
                        ids.append((aid, person))
                expected[(acct, c)] = ids
        return trail, expected, msgs

    def put_all(self, trail, msgs):
        self.put_logs(CENTRAL, TRAIL_GROUP, f"o-test_{CENTRAL}_CloudTrail_us-east-1", [json.dumps(t) for t in trail])
        for (acct, c), m in msgs.items():
            self.put_logs(acct, f"/aws/eks/{c}/cluster", "kube-apiserver-audit-0123456789abcdef", m)
            # the authenticator's stream of the same log group: counted, never a row
            self.put_logs(acct, f"/aws/eks/{c}/cluster", "authenticator-0123", ["level=info msg=\"access granted\""])

    def download_lake(self, dest: pathlib.Path) -> list[str]:
        s3 = self.client("s3", CENTRAL)
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="audit-lake"):
            for o in page.get("Contents", []):
                keys.append(o["Key"])
                p = dest / o["Key"]
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(s3.get_object(Bucket="audit-lake", Key=o["Key"])["Body"].read())
        return sorted(keys)


def consume(auditlake, org, account, *args, env=None, check=True, timeout=240):
    return run([auditlake, "consume", "--stream", STREAM, "--lake", "s3://audit-lake", "--until-idle", "--buffer-seconds", "1", *args],
               env=org.env(account, **(env or {})), check=check, timeout=timeout)


def assert_exactly_once(lake: pathlib.Path, expected):
    con = lakesql.connect(lake)
    rows = lakesql.rows(con, "SELECT audit_id, account_id, cluster, principal_name, attribution_status FROM eks_audit_attributed")
    ids = [r["audit_id"] for r in rows]
    assert len(ids) == len(set(ids)), "an event arrived twice"
    got = {r["audit_id"]: r for r in rows}
    want = {aid: (acct, c, who) for (acct, c), v in expected.items() for aid, who in v}
    assert set(got) == set(want), f"missing: {sorted(set(want) - set(got))[:5]}, extra: {sorted(set(got) - set(want))[:5]}"
    for aid, (acct, c, who) in want.items():
        r = got[aid]
        assert (r["account_id"], r["cluster"], r["principal_name"]) == (acct, c, who), r
        if who != "system:anonymous":
            assert r["attribution_status"] == "resolved", r


@pytest.fixture()
def org(moto):
    return Org(moto)


def test_cloudwatch_to_kinesis_to_lake_exactly_once_with_the_right_people(auditlake, org, tmp_path):
    trail, expected, msgs = org.people_events()
    org.put_all(trail, msgs)
    # CloudTrail (security account stream) first, then each member account's stream
    r = consume(auditlake, org, CENTRAL)
    assert b"3 STS sessions" in r.stderr
    for acct in (A, B):
        r = consume(auditlake, org, acct)
        assert b"consume: batch 1:" in r.stderr  # progress output
    lake = tmp_path / "lake"
    keys = org.download_lake(lake)
    assert_exactly_once(lake, expected)
    con = lakesql.connect(lake)
    skipped = lakesql.rows(con, "SELECT count(*) AS n FROM eks_audit WHERE log_stream LIKE 'authenticator%'")
    assert skipped[0]["n"] == 0
    # Firehose's raw/ archive: replayable with `auditlake ingest` into an identical table
    raw = [k for k in keys if k.startswith("raw/")]
    assert raw and not [k for k in keys if k.startswith("errors/")]
    replay = tmp_path / "replay"
    run([auditlake, "ingest", "--lake", replay, lake / "raw"])
    n = lakesql.rows(lakesql.connect(replay), "SELECT count(DISTINCT audit_id) AS n FROM eks_audit")[0]["n"]
    assert n == sum(len(v) for v in expected.values())
    # running again finds nothing new: checkpoints hold
    r = consume(auditlake, org, A)
    assert b"0 batches" in r.stderr
    assert org.download_lake(tmp_path / "again") == keys


def test_poison_record_goes_to_errors_and_the_stream_keeps_flowing(auditlake, org, tmp_path):
    trail, expected, msgs = org.people_events(n_per_cluster=12)
    org.put_all(trail, msgs)
    k = org.client("kinesis", A)
    k.put_record(StreamName=STREAM, Data=b"\x00poison: not gzip, not JSON", PartitionKey="p")
    missing_fields = gzip.compress(b"{\"messageType\":\"DATA_MESSAGE\"}", mtime=0)
    k.put_record(StreamName=STREAM, Data=missing_fields, PartitionKey="p")
    for acct in (CENTRAL, A, B):
        consume(auditlake, org, acct)
    lake = tmp_path / "lake"
    keys = org.download_lake(lake)
    errs = [k for k in keys if k.startswith("errors/processing-failed/")]
    assert len(errs) == 1
    lines = [json.loads(l) for l in (lake / errs[0]).read_text().splitlines()]
    assert sorted(base64.b64decode(l["rawData"])[:7] for l in lines) == sorted([b"\x00poison", missing_fields[:7]])
    assert all(l["errorMessage"] for l in lines)
    assert_exactly_once(lake, expected)


class Proxy:
    """A loopback TCP proxy in front of moto whose link can be cut: what a client sees
    while an endpoint restarts (moto keeps its state in memory, so the server process
    itself cannot restart without losing the stream)."""

    def __init__(self, target_port):
        self.port = free_port()
        self.target = target_port
        self.up = True
        self.conns = []
        self.sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if not self.up:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        self.up = False
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.conns = []

    def restore(self):
        self.up = True

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


def _wait_for(pred, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def _checkpoints(org, account):
    s3 = org.client("s3", CENTRAL)
    try:
        return json.loads(s3.get_object(Bucket="audit-lake", Key=f"_consumer/{account}/us-east-1/{STREAM}/checkpoints.json")["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def test_endpoint_outage_mid_run_loses_and_duplicates_nothing(auditlake, org, tmp_path):
    trail, expected, msgs = org.people_events(n_per_cluster=60)
    first = {k: v[: len(v) // 2] for k, v in msgs.items()}
    second = {k: v[len(v) // 2:] for k, v in msgs.items()}
    org.put_all(trail, first)
    consume(auditlake, org, CENTRAL)
    proxy = Proxy(org.moto.port)
    # a long-running consumer (no --until-idle), talking to the emulator through the proxy
    p = subprocess.Popen([str(auditlake), "consume", "--stream", STREAM, "--lake", "s3://audit-lake", "--buffer-seconds", "1"],
                         env=org.env(B, AWS_ENDPOINT_URL=proxy.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _wait_for(lambda: _checkpoints(org, B) is not None), "consumer made no progress"
        proxy.cut()
        # events keep arriving while the endpoint is away
        for (acct, c), m in second.items():
            if acct == B:
                org.put_logs(acct, f"/aws/eks/{c}/cluster", "kube-apiserver-audit-0123456789abcdef", m)
        time.sleep(4)
        proxy.restore()
        time.sleep(6)
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()[-2000:]
    assert b"retrying" in err or b"will retry" in err, "the outage was not noticed"
    # a restarted consumer picks up whatever is left, from the checkpoints
    consume(auditlake, org, B)
    for (acct, c), m in second.items():
        if acct == A:
            org.put_logs(acct, f"/aws/eks/{c}/cluster", "kube-apiserver-audit-0123456789abcdef", m)
    consume(auditlake, org, A)
    lake = tmp_path / "lake"
    org.download_lake(lake)
    assert_exactly_once(lake, expected)


def test_s3_failing_for_a_while_retries_the_batch_then_succeeds(auditlake, org, tmp_path):
    trail, expected, msgs = org.people_events(n_per_cluster=20)
    org.put_all(trail, msgs)
    consume(auditlake, org, CENTRAL)
    proxy = Proxy(org.moto.port)
    # S3 goes down after the consumer started and before its first batch is due
    p = subprocess.Popen([str(auditlake), "consume", "--stream", STREAM, "--lake", "s3://audit-lake", "--buffer-seconds", "4"],
                         env=org.env(A, AWS_ENDPOINT_URL_S3=proxy.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        proxy.cut()
        time.sleep(6)
        assert p.poll() is None, "the consumer gave up instead of retrying"
        proxy.restore()
        assert _wait_for(lambda: _checkpoints(org, A) is not None, timeout=60), "the batch never succeeded"
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=240)
    assert p.returncode == 0, err.decode()[-2000:]
    assert b"failed (attempt 1" in err and b"consume: batch 1:" in err, err.decode()[-2000:]
    consume(auditlake, org, B)
    lake = tmp_path / "lake"
    org.download_lake(lake)
    assert_exactly_once(lake, expected)


def test_consumer_killed_between_write_and_checkpoint_replays_the_batch_exactly_once(auditlake, org, tmp_path):
    trail, expected, msgs = org.people_events(n_per_cluster=40)
    org.put_all(trail, msgs)
    consume(auditlake, org, CENTRAL)
    # the process dies after its first batch's objects are written, before the checkpoint
    r = consume(auditlake, org, B, "--buffer-mb", "0.002", "--failpoint", "after-write", check=False)
    assert r.returncode != 0 and b"failpoint after-write" in r.stderr
    s3 = org.client("s3", CENTRAL)
    manifest = json.loads(s3.get_object(Bucket="audit-lake", Key=f"_consumer/{B}/us-east-1/{STREAM}/inflight.json")["Body"].read())
    assert manifest["ranges"], "the in-flight batch must be on record"
    assert _checkpoints(org, B) is None
    written = org.download_lake(tmp_path / "partial")
    assert any(k.startswith("eks_audit/") for k in written)
    # the next start replays exactly that batch (same keys), then carries on
    r = consume(auditlake, org, B, "--buffer-mb", "0.002")
    assert b"replaying an in-flight batch" in r.stderr
    consume(auditlake, org, A)
    lake = tmp_path / "lake"
    org.download_lake(lake)
    assert_exactly_once(lake, expected)


def test_sigterm_flushes_what_is_buffered_and_exits_cleanly(auditlake, org, tmp_path):
    trail, expected, msgs = org.people_events(n_per_cluster=10)
    org.put_all(trail, msgs)
    consume(auditlake, org, CENTRAL)
    consume(auditlake, org, B)
    # a long buffer: nothing would be flushed for ten minutes without the signal
    p = subprocess.Popen([str(auditlake), "consume", "--stream", STREAM, "--lake", "s3://audit-lake", "--buffer-seconds", "600"],
                         env=org.env(A), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(4)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()[-2000:]
    assert b"stopping after the current batch" in err and b"consume: batch 1:" in err
    lake = tmp_path / "lake"
    org.download_lake(lake)
    assert_exactly_once(lake, expected)
