#!/usr/bin/env python3
"""Python peer of the Rust Firehose transformation handler, for the DESIGN section 7 benchmark.

It does the same work as the Rust handler, written the way a typical competent Python
Lambda would be: single-threaded, orjson + pyarrow, no pandas, no native extensions
of its own. Each Firehose record is base64 of gzip of one or more CloudWatch Logs
subscription envelopes. For EKS audit streams, every log event becomes one `eks_audit`
row with the stamps, the audit fields and the attribution (DESIGN sections 4 and 5).
Rows are grouped per (dt, account, cluster), sorted by event time and written as
Parquet (zstd level 1). The Firehose response echoes every record.

    python bench/peer/handler.py --event EVENT.json --sessions SESSIONS.jsonl --out DIR [--repeat N]

It prints one JSON line with the timings and counts. Only `handle()` is timed: reading
the event file and loading the STS sessions happen before the clock starts. The Rust
side also starts with a warm session cache.

Where this differs from the Rust handler (see README.md):
  * CloudTrail events in the batch are skipped, not indexed: sessions come only from
    SESSIONS.jsonl, and no `sts_sessions` Parquet is written.
  * There is no aws-auth reversal and no session-name matching. An assumed role without
    an access key is `assumed_role` / `session_name` / `pending`.
  * Request and response bodies are re-serialised with orjson. Rust copies the raw
    JSON text, so the bytes may differ (key order is kept, whitespace is not).
  * There is no cap on decompressed size (plain gzip.decompress).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import hashlib
import json
import os
import re
import statistics
import sys
import time
import zlib
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]
DDL_PATH = REPO / "schemas" / "athena" / "eks_audit.sql"

INVALID = "_invalid_"
EKS_PREFIX = "/aws/eks/"
EKS_SUFFIX = "/cluster"
MAX_CHAIN_DEPTH = 16
DAY_MS = 86_400_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_MS = timedelta(milliseconds=1)
TRUNCATION_MARKER = "[Truncated...]"
DECISION = "authorization.k8s.io/decision"
REASON = "authorization.k8s.io/reason"

CLUSTER_RE = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}")
ACCOUNT_RE = re.compile(r"[0-9]{12}")

# --------------------------------------------------------------------------------------
# Schema: column names and Hive types from the checked-in Athena DDL.

DDL_COLUMN_RE = re.compile(r"^\s*`(?P<name>[a-z0-9_]+)`\s+(?P<type>\S+)\s+COMMENT\s", re.M)

HIVE_TYPES = {
    "string": pa.string(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
    "array<string>": pa.list_(pa.string()),
    "map<string,string>": pa.map_(pa.string(), pa.string()),
    "map<string,array<string>>": pa.map_(pa.string(), pa.list_(pa.string())),
}


def load_schema(path: Path = DDL_PATH) -> pa.Schema:
    """The eks_audit Arrow schema, in DDL order. The `dt` partition key is not a column."""
    text = path.read_text()
    body = text.split("PARTITIONED BY", 1)[0]
    fields = []
    for m in DDL_COLUMN_RE.finditer(body):
        hive = m.group("type").lower()
        if hive not in HIVE_TYPES:
            raise SystemExit(f"{path}: column {m.group('name')}: unsupported type {hive}")
        fields.append(pa.field(m.group("name"), HIVE_TYPES[hive]))
    if not fields:
        raise SystemExit(f"{path}: no columns found")
    return pa.schema(fields)


# The order in which build_row() fills a row tuple. The DDL decides the order of the
# columns in the file; load-time checks make sure the two name the same columns.
ROW_FIELDS = (
    "account_id", "region", "cluster", "log_group", "log_stream", "cwl_event_id",
    "ingest_time", "audit_id", "stage", "level", "verb", "request_uri", "event_time",
    "stage_time", "username", "user_uid", "user_groups", "user_extra",
    "impersonated_username", "impersonated_groups", "source_ips", "source_ip",
    "user_agent", "object_resource", "object_subresource", "object_namespace",
    "object_name", "object_api_group", "object_api_version", "response_code",
    "response_status", "response_reason", "response_message", "authz_decision",
    "authz_reason", "annotations", "request_object", "response_object",
    "aws_access_key_id", "aws_arn", "aws_role_arn", "aws_session_name",
    "aws_principal_id", "principal_type", "principal_name", "principal_arn",
    "principal_account_id", "source_identity", "role_chain", "attribution_method",
    "attribution_status", "parse_status", "raw_message",
)
IDX = {name: i for i, name in enumerate(ROW_FIELDS)}
I_EVENT_TIME = IDX["event_time"]
I_ATTR_STATUS = IDX["attribution_status"]
I_PARSE_STATUS = IDX["parse_status"]


# Columns the peer writes as all-null: the workload columns (Pod Identity / IRSA
# details) and the rule ids of detections, which it does not compute. Said in
# BENCHMARKS.md; everything else is the same work.
NOT_BUILT = ("principal_cluster", "principal_pod", "principal_user_id", "detections")


def check_schema(schema: pa.Schema) -> list[int | None]:
    """Positions in a row tuple of the schema's columns, in schema order (None: a
    NOT_BUILT column, written as nulls)."""
    names = schema.names
    missing = sorted(set(names) - set(ROW_FIELDS) - set(NOT_BUILT))
    extra = sorted(set(ROW_FIELDS) - set(names))
    if missing or extra:
        raise SystemExit(
            f"{DDL_PATH}: columns differ from the handler: "
            f"not built here {missing}, not in the DDL {extra}"
        )
    return [IDX.get(n) for n in names]


# --------------------------------------------------------------------------------------
# Small helpers


def parse_ts_ms(s) -> int | None:
    """Epoch ms of an RFC 3339 timestamp (metav1.MicroTime), truncating below the ms."""
    if type(s) is not str:
        return None
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return (dt - EPOCH) // ONE_MS


def utc_date(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))


def first_str(v):
    """First element of a `user.extra` value (a list of strings)."""
    if type(v) is list:
        if v and type(v[0]) is str:
            return v[0]
        return None
    return v if type(v) is str else None


def str_or_none(v):
    return v if type(v) is str else None


def str_list(v):
    return v if type(v) is list else None


def as_dict(v) -> dict:
    return v if type(v) is dict else {}


def map_of_lists(extra):
    """`user.extra` as map<string, array<string>>: a lone string becomes a one-element list."""
    if type(extra) is not dict:
        return None
    out = {}
    for k, v in extra.items():
        if type(v) is list:
            out[k] = v
        elif type(v) is str:
            out[k] = [v]
        else:
            out[k] = None
    return out


def map_of_strings(ann):
    """`annotations` as map<string,string>: a non-string value is kept as its JSON."""
    if type(ann) is not dict:
        return None
    for v in ann.values():
        if type(v) is not str:
            return {
                k: (v if type(v) is str or v is None else orjson.dumps(v).decode())
                for k, v in ann.items()
            }
    return ann


def raw_json(v):
    return None if v is None else orjson.dumps(v).decode()


def arn_parts(arn) -> tuple[str, str, str, str] | None:
    """(partition, service, account, resource) of an ARN, or None."""
    if type(arn) is not str or not arn.startswith("arn:"):
        return None
    parts = arn.split(":", 5)
    if len(parts) != 6 or not parts[1].startswith("aws"):
        return None
    return parts[1], parts[2], parts[4], parts[5]


def account_of(arn) -> str | None:
    p = arn_parts(arn)
    return p[2] if p else None


def load_json_documents(payload: bytes) -> list:
    """All JSON documents in `payload` (normally one; concatenated ones are allowed)."""
    try:
        return [orjson.loads(payload)]
    except orjson.JSONDecodeError:
        pass
    # Several documents back to back: orjson has no stream mode, use the stdlib decoder.
    text = payload.decode("utf-8")
    dec = json.JSONDecoder()
    docs, pos, n = [], 0, len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos >= n:
            break
        doc, pos = dec.raw_decode(text, pos)  # ValueError on garbage: the record fails
        docs.append(doc)
    if not docs:
        raise ValueError("no JSON document")
    return docs


# --------------------------------------------------------------------------------------
# Attribution (DESIGN section 5). Attribution tuple:
# (principal_type, principal_name, principal_arn, principal_account_id,
#  source_identity, role_chain, attribution_method, attribution_status)

# role_chain is never null (an empty list when there is no chain), as in the Rust writer.
NO_CHAIN: list = []  # shared, never mutated
PENDING_KEY = ("assumed_role", None, None, None, None, NO_CHAIN, "access_key", "pending")
PENDING_NAME = ("assumed_role", None, None, None, None, NO_CHAIN, "session_name", "pending")


def k8s_attr(ptype: str, name):
    return (ptype, name, None, None, None, NO_CHAIN, "none", "not_applicable")


def origin_of(s: dict):
    """What one STS session says about its origin:
    ("principal", partial attribution dict) | ("chained", caller key) | ("unknown", None)."""
    ev = s.get("event_name")
    if ev == "AssumeRoleWithSAML":
        provider = s.get("saml_provider_arn")
        idc = provider is not None and ":saml-provider/AWSSSO_" in provider
        a = ("identity_center_user" if idc else "saml_user",
             s.get("saml_subject"), provider, account_of(s.get("role_arn")))
    elif ev == "AssumeRoleWithWebIdentity":
        a = ("web_identity", s.get("web_identity_subject"),
             s.get("web_identity_provider"), account_of(s.get("role_arn")))
    elif ev == "GetFederationToken":
        a = ("federated_user", s.get("role_session_name"),
             s.get("assumed_role_arn"), s.get("caller_account_id"))
    elif ev == "AssumeRole":
        caller = s.get("caller_type")
        if caller == "AssumedRole":
            key = s.get("caller_access_key_id")
            return ("chained", key) if key else ("unknown", None)
        if caller == "AWSAccount":
            return ("unknown", None)
        ptype = {
            "IAMUser": "iam_user",
            "Root": "root",
            "AWSService": "aws_service",
            "FederatedUser": "federated_user",
        }.get(caller, "unknown")
        name = "root" if ptype == "root" else s.get("caller_user_name")
        if ptype == "aws_service":
            a = (ptype, name, None, None)
        else:
            a = (ptype, name, s.get("caller_arn"), s.get("caller_account_id"))
    else:
        return ("unknown", None)
    return ("principal", (a, s.get("source_identity")))


def resolve_key(key: str, sessions: dict) -> tuple:
    """Follow an access key through role chaining to the session's origin."""
    chain: list[str] = []
    source_identity = None
    seen = set()
    cur = key
    for _ in range(MAX_CHAIN_DEPTH):
        if cur in seen:
            break  # crafted records must not loop
        seen.add(cur)
        s = sessions.get(cur)
        if s is None:
            break
        if source_identity is None:
            source_identity = s.get("source_identity")
        role = s.get("role_arn")
        if role:
            chain.append(role)
        kind, val = origin_of(s)
        if kind == "principal":
            (ptype, name, arn, account), origin_si = val
            chain.reverse()
            return (ptype, name, arn, account, origin_si or source_identity, chain,
                    "access_key", "resolved")
        if kind == "chained":
            cur = val
            continue
        break
    return PENDING_KEY


def from_arn(arn, access_key):
    """Attribution named by an IAM/STS principal ARN, or None when the ARN names none."""
    p = arn_parts(arn)
    if p is None:
        return None
    _partition, service, account, resource = p
    if service == "iam":
        if resource == "root":
            return ("root", "root", arn, account, None, NO_CHAIN, "direct", "resolved")
        if resource.startswith("user/"):
            name = resource.rsplit("/", 1)[-1]
            return ("iam_user", name, arn, account, None, NO_CHAIN, "direct", "resolved")
        return None
    if service == "sts":
        if resource.startswith("assumed-role/"):
            if "/" not in resource[len("assumed-role/"):]:
                return None
            return ("key", access_key) if access_key else PENDING_NAME
        if resource.startswith("federated-user/"):
            if access_key:
                return ("key", access_key)
            name = resource[len("federated-user/"):]
            return ("federated_user", name, arn, account, None, NO_CHAIN, "direct", "resolved")
    return None


def attribute(username, groups, extra_arn, access_key, sessions: dict, cache: dict) -> tuple:
    user = username or ""
    if user == "system:anonymous" or (type(groups) is list and "system:unauthenticated" in groups):
        return k8s_attr("anonymous", username or "system:anonymous")
    if user.startswith("system:serviceaccount:"):
        return k8s_attr("k8s_service_account", user[len("system:serviceaccount:"):])
    if user.startswith("system:") or user.startswith("eks:"):
        return k8s_attr("k8s_system", username)
    a = from_arn(extra_arn, access_key) if extra_arn else None
    if a is None:
        a = from_arn(user, access_key)
    if a is None:
        return k8s_attr("unknown", username)
    if a[0] == "key":
        key = a[1]
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = resolve_key(key, sessions)
        return hit
    return a


# --------------------------------------------------------------------------------------
# One log event -> one row


def recover(message: str):
    """Fields of an unparseable message that a pattern finds before the request body."""
    cut = len(message)
    for marker in ('"requestObject":', '"responseObject":'):
        i = message.find(marker)
        if i >= 0:
            cut = i
            break
    head = message[:cut]

    def pat(key):
        m = re.search('"' + key + r'":"([^"\\]+)"', head)
        return m.group(1) if m else None

    m = re.search(r'"accessKeyId":\["([A-Za-z0-9]+)"', head)
    return {
        "auditID": pat("auditID"),
        "verb": pat("verb"),
        "stage": pat("stage"),
        "level": pat("level"),
        "requestURI": pat("requestURI"),
        "username": pat("username"),
        "requestReceivedTimestamp": pat("requestReceivedTimestamp"),
        "accessKeyId": m.group(1) if m else None,
    }


def build_row(stamp: tuple, le: dict, region, ingest_ms: int, sessions: dict, cache: dict) -> tuple:
    account_id, cluster, log_group, log_stream = stamp
    message = le["message"]
    cwl_id = le["id"]
    cwl_id = cwl_id if type(cwl_id) is str else str(cwl_id)
    cwl_ts = le["timestamp"]
    xf = le.get("extractedFields")
    if xf:
        region = xf.get("@aws.region") or region

    try:
        ev = orjson.loads(message)
        ok = type(ev) is dict and (ev.get("kind") == "Event" or ev.get("auditID") is not None)
    except orjson.JSONDecodeError:
        ok = False

    if not ok:
        r = recover(message)
        status = "truncated" if message.rstrip().endswith(TRUNCATION_MARKER) else "invalid"
        event_ms = parse_ts_ms(r["requestReceivedTimestamp"])
        if event_ms is None:
            event_ms = cwl_ts
        key = r["accessKeyId"]
        attr = attribute(r["username"], None, None, key, sessions, cache)
        return (
            account_id, region, cluster, log_group, log_stream, cwl_id, ingest_ms,
            r["auditID"], r["stage"], r["level"], r["verb"], r["requestURI"], event_ms,
            None, r["username"], None, None, None,
            None, None, None, None,
            None, None, None, None,
            None, None, None, None,
            None, None, None, None,
            None, None, None, None,
            key, None, None, None,
            None, *attr, status, message,
        )

    user = as_dict(ev.get("user"))
    imp = as_dict(ev.get("impersonatedUser"))
    obj = as_dict(ev.get("objectRef"))
    rs = as_dict(ev.get("responseStatus"))
    extra = user.get("extra")
    x = extra if type(extra) is dict else {}
    source_ips = str_list(ev.get("sourceIPs"))
    annotations = map_of_strings(ev.get("annotations"))
    ann = annotations or {}
    code = rs.get("code")

    event_ms = parse_ts_ms(ev.get("requestReceivedTimestamp"))
    if event_ms is None:
        event_ms = cwl_ts
    username = str_or_none(user.get("username"))
    groups = str_list(user.get("groups"))
    key = first_str(x.get("accessKeyId"))
    aws_arn = first_str(x.get("arn"))
    attr = attribute(username, groups, aws_arn, key, sessions, cache)

    return (
        account_id, region, cluster, log_group, log_stream, cwl_id, ingest_ms,
        ev.get("auditID"), ev.get("stage"), ev.get("level"), ev.get("verb"),
        ev.get("requestURI"), event_ms, parse_ts_ms(ev.get("stageTimestamp")),
        username, user.get("uid"), groups, map_of_lists(extra),
        imp.get("username"), str_list(imp.get("groups")),
        source_ips, source_ips[-1] if source_ips else None, ev.get("userAgent"),
        obj.get("resource"), obj.get("subresource"), obj.get("namespace"),
        obj.get("name"), obj.get("apiGroup"), obj.get("apiVersion"),
        code if type(code) is int else None,
        rs.get("status"), rs.get("reason"), rs.get("message"),
        ann.get(DECISION), ann.get(REASON), annotations,
        raw_json(ev.get("requestObject")), raw_json(ev.get("responseObject")),
        key, aws_arn, first_str(x.get("canonicalArn")), first_str(x.get("sessionName")),
        first_str(x.get("principalId")),
        *attr, "ok", None,
    )


# --------------------------------------------------------------------------------------
# The handler


class Handler:
    """Holds what a Lambda keeps warm between invocations: schema and STS sessions."""

    def __init__(self, sessions: dict, out_dir: Path, schema: pa.Schema | None = None):
        self.sessions = sessions
        self.out_dir = Path(out_dir)
        self.schema = schema or load_schema()
        self.order = check_schema(self.schema)

    def handle(self, event: dict, now_ms: int | None = None):
        """One Firehose invocation. Returns (response JSON bytes, stats dict)."""
        ingest_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        default_region = event.get("region")
        cache: dict = {}  # attribution per access key, for this invocation
        groups: dict[tuple, list] = {}
        out_records = []
        stats = Counter()

        for rec in event.get("records", []):
            data = rec.get("data", "")
            try:
                payload = gzip.decompress(base64.b64decode(data, validate=True))
                stats["decompressed_bytes"] += len(payload)
                envelopes = load_json_documents(payload)
                for env in envelopes:
                    if (type(env) is not dict or "owner" not in env or "logGroup" not in env
                            or type(env.get("logEvents")) is not list
                            or env.get("messageType") not in ("DATA_MESSAGE", "CONTROL_MESSAGE")):
                        raise ValueError("not a CloudWatch Logs envelope")
                rows_of_record: list[tuple[tuple, tuple]] = []
                data_seen = False
                for env in envelopes:
                    if env["messageType"] == "CONTROL_MESSAGE":
                        continue
                    data_seen = True
                    self._envelope(env, default_region, ingest_ms, cache, rows_of_record, stats)
            except (binascii.Error, OSError, EOFError, zlib.error, ValueError,
                    KeyError, TypeError, AttributeError):
                stats["records_failed"] += 1
                out_records.append({"recordId": rec.get("recordId"),
                                    "result": "ProcessingFailed", "data": data})
                continue
            if not data_seen:
                stats["records_dropped"] += 1
                out_records.append({"recordId": rec.get("recordId"), "result": "Dropped", "data": ""})
                continue
            for part, row in rows_of_record:
                groups.setdefault(part, []).append(row)
            stats["records_ok"] += 1
            out_records.append({"recordId": rec.get("recordId"), "result": "Ok", "data": data})

        fingerprint = hashlib.blake2b(
            "\n".join(str(r.get("recordId")) for r in event.get("records", [])).encode(),
            digest_size=16,
        ).digest()
        written = []
        status_counts = Counter()
        parse_counts = Counter()
        for (day, account, cluster), rows in groups.items():
            rel = f"eks_audit/dt={utc_date(day)}/{account}/{cluster}"
            h = hashlib.blake2b(rel.encode(), digest_size=8, key=fingerprint).hexdigest()
            path = self.out_dir / rel / f"part-{h}.parquet"
            columns = list(zip(*rows))
            status_counts.update(columns[I_ATTR_STATUS])
            parse_counts.update(columns[I_PARSE_STATUS])
            arrays = [pa.array(columns[i], type=f.type) if i is not None else pa.nulls(len(rows), type=f.type)
                      for i, f in zip(self.order, self.schema)]
            table = pa.Table.from_arrays(arrays, schema=self.schema).sort_by("event_time")
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                table, path,
                compression="zstd", compression_level=1,
                use_dictionary=True, write_statistics=True,
                sorting_columns=[pq.SortingColumn(self.schema.get_field_index("event_time"))],
            )
            written.append(path)

        response = orjson.dumps({"records": out_records})
        stats["records"] = len(out_records)
        stats["events"] = sum(status_counts.values())
        return response, {
            "stats": dict(stats),
            "rows_by_status": dict(status_counts),
            "rows_by_parse_status": dict(parse_counts),
            "files": written,
        }

    def _envelope(self, env, default_region, ingest_ms, cache, out, stats):
        owner = env["owner"]
        log_group = env["logGroup"]
        log_stream = env.get("logStream") or ""
        log_events = env["logEvents"]
        stats["log_events"] += len(log_events)
        if not (log_group.startswith(EKS_PREFIX) and log_group.endswith(EKS_SUFFIX)
                and len(log_group) >= len(EKS_PREFIX) + len(EKS_SUFFIX)):
            stats["skipped"] += len(log_events)  # CloudTrail or anything else: not indexed here
            return
        if not log_stream.startswith("kube-apiserver-audit"):
            stats["skipped"] += len(log_events)  # authenticator, scheduler, ...: raw/ only
            return
        cluster = log_group[len(EKS_PREFIX):-len(EKS_SUFFIX)]
        if not CLUSTER_RE.fullmatch(cluster):
            cluster = INVALID
        account_folder = owner if type(owner) is str and ACCOUNT_RE.fullmatch(owner) else INVALID
        stamp = (owner, cluster, log_group, log_stream)
        sessions = self.sessions
        for le in log_events:
            row = build_row(stamp, le, default_region, ingest_ms, sessions, cache)
            out.append(((row[I_EVENT_TIME] // DAY_MS, account_folder, cluster), row))


# --------------------------------------------------------------------------------------
# CLI

SESSION_KEYS = (
    "access_key_id", "event_name", "caller_type", "caller_arn", "caller_account_id",
    "caller_access_key_id", "caller_user_name", "role_arn", "role_session_name",
    "assumed_role_arn", "source_identity", "saml_subject", "saml_provider_arn",
    "web_identity_subject", "web_identity_provider",
)


def load_sessions(path: Path) -> dict:
    sessions = {}
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            s = orjson.loads(line)
            key = s.get("access_key_id")
            if key:
                sessions[key] = {k: s.get(k) for k in SESSION_KEYS}
    return sessions


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--event", required=True, type=Path, help="Firehose transformation event JSON")
    ap.add_argument("--sessions", required=True, type=Path, help="STS sessions, one JSON per line")
    ap.add_argument("--out", required=True, type=Path, help="lake directory (local sink)")
    ap.add_argument("--repeat", type=int, default=5, help="invocations to time (best and median reported)")
    ap.add_argument("--response", type=Path, help="also write the last Firehose response here")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    try:
        event = orjson.loads(args.event.read_bytes())
        sessions = load_sessions(args.sessions)
    except (OSError, ValueError) as e:
        print(f"handler.py: {e}", file=sys.stderr)
        return 2
    handler = Handler(sessions, args.out)

    times = []
    response = result = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        response, result = handler.handle(event)
        times.append(time.perf_counter() - t0)

    if args.response:
        args.response.write_bytes(response)
    stats = result["stats"]
    print(json.dumps({
        "impl": "python",
        "seconds_best": min(times),
        "seconds_median": statistics.median(times),
        "repeats": args.repeat,
        "records": stats.get("records", 0),
        "events": stats.get("events", 0),
        "decompressed_bytes": stats.get("decompressed_bytes", 0),
        "parquet_bytes": sum(os.path.getsize(p) for p in result["files"]),
        "rows_by_status": result["rows_by_status"],
        "rows_by_parse_status": result["rows_by_parse_status"],
        "records_ok": stats.get("records_ok", 0),
        "records_dropped": stats.get("records_dropped", 0),
        "records_failed": stats.get("records_failed", 0),
        "log_events_skipped": stats.get("skipped", 0),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
