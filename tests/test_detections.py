"""Detections as users see them: the shipped Sigma pack's test events through the real
handler (`auditlake ingest`; the `aws/cloudtrail` rules' CloudTrail records in the trusted
organisation trail's envelope), the `findings` table, `eks_audit.detections` and
`eks_api_events.detections` read back with DuckDB and pyarrow, the rules' retro-hunt SQL
(`auditlake rules sql`) run on DuckDB against what ingest found, late attribution of findings (`findings_attributed`), alerts
through EventBridge on moto into an SQS queue and into a local directory, rule files
that must fail start, an operator's own rules (directory and S3), and the rules CLI."""
from __future__ import annotations

import datetime as dt
import json
import pathlib
import re
import time
import urllib.parse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import events as E
import lakesql
from support import ROOT, run, wait_for_binary
from test_lake import ATTR

PACK = ROOT / "schemas" / "rules"
PACK_TESTS = PACK / "tests"
RULE_FILES = sorted(PACK.glob("*.yml"))
A = "111122223333"
LEVELS = ["informational", "low", "medium", "high", "critical"]
KEY = ("rule_id", "log_group", "log_stream", "cwl_event_id")
# the `|expand` placeholders a tests file may give values for, and the setting that does
PLACEHOLDER_ENV = {"org_accounts": "AUDITLAKE_ORG_ACCOUNTS"}
# what `auditlake demo` sets AUDITLAKE_ORG_ACCOUNTS to (its four accounts)
DEMO_ENV = {"AUDITLAKE_ORG_ACCOUNTS": "111111111111,222222222222,333333333333,444444444444"}


def cli(auditlake, *args, env=None, check=True, input=None):
    """Run the binary; it may be missing for a moment while it is relinked."""
    for attempt in range(3):
        wait_for_binary(auditlake)
        try:
            return run([auditlake, *args], env=env, check=check, input=input)
        except OSError:  # ETXTBSY / ENOENT while being relinked
            if attempt == 2:
                raise
            time.sleep(20)


def rule_yaml(path: pathlib.Path) -> dict:
    return yaml.safe_load(path.read_text())


def techniques(rule: dict) -> list[str]:
    """`attack.t1552.007` -> `T1552.007`, in tag order; tactic tags are not techniques."""
    return [t.split(".", 1)[1].upper() for t in rule.get("tags") or [] if re.fullmatch(r"attack\.t\d{4}(\.\d{3})?", t)]


def at_or_above(level: str) -> set[str]:
    return set(LEVELS[LEVELS.index(level):])


def read_cases(path: pathlib.Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def is_trail_rule(rule: dict) -> bool:
    """An `aws/cloudtrail` rule: its test events are CloudTrail records of EKS API calls."""
    src = rule.get("logsource") or {}
    return (src.get("product"), src.get("service")) == ("aws", "cloudtrail")


def event_key(rule: dict, e: dict):
    """A test event's id, as findings.audit_id holds it: a CloudTrail record's eventID, an
    audit event's auditID."""
    return e.get("eventID") if is_trail_rule(rule) else e.get("auditID")


def pack_env(pack: dict) -> dict[str, str]:
    """The settings the tests files' placeholders ask for (the union of their values),
    e.g. AUDITLAKE_ORG_ACCOUNTS for `%org_accounts%`: one ingest serves every file."""
    values: dict[str, set] = {}
    for _, cases in pack.values():
        for name, vals in ((cases or {}).get("placeholders") or {}).items():
            assert name in PLACEHOLDER_ENV, f"placeholder {name!r}: no setting known to give it values"
            values.setdefault(name, set()).update(vals)
    return {PLACEHOLDER_ENV[n]: ",".join(sorted(v)) for n, v in sorted(values.items())}


@pytest.fixture(scope="module")
def pack():
    """The pack as it is now: stem -> (rule, tests or None). The tests files are read once,
    so every test of the module sees the same events."""
    return {p.stem: (rule_yaml(p), read_cases(PACK_TESTS / f"{p.stem}.json")) for p in RULE_FILES}


def write_pack_payloads(pack: dict, into: pathlib.Path, stems=None) -> dict[str, dict]:
    """One gzip CloudWatch Logs payload per rule, positives then negatives: a cluster's
    audit log group (cluster `rules-<n>`) for a kubernetes/audit rule, a stream of the
    trusted organisation trail's log group (`o-x_CloudTrail_rules-<n>`) for an
    aws/cloudtrail rule. Returns stem -> {cluster (None for a trail), log_group, log_stream}."""
    into.mkdir(parents=True, exist_ok=True)
    where = {}
    for n, (stem, (rule, cases)) in enumerate(sorted(pack.items())):
        if cases is None or (stems is not None and stem not in stems):
            continue
        events = cases["positive"] + cases["negative"]
        if is_trail_rule(rule):
            where[stem] = {"cluster": None, "log_group": E.TRAIL_GROUP, "log_stream": f"o-x_CloudTrail_rules-{n}"}
            payload = E.trail_envelope(events, stream=where[stem]["log_stream"])
        else:
            cluster = f"rules-{n}"
            where[stem] = {"cluster": cluster, "log_group": f"/aws/eks/{cluster}/cluster",
                           "log_stream": "kube-apiserver-audit-0a1b"}
            payload = E.audit_envelope(A, cluster, [json.dumps(e) for e in events])
        (into / f"{stem}.gz").write_bytes(E.gz(payload))
    return where


@pytest.fixture(scope="module")
def pack_lake(auditlake, pack, tmp_path_factory):
    """Every rule's positive and negative events, one payload file per rule, in ONE ingest
    (with the placeholders' settings)."""
    base = tmp_path_factory.mktemp("pack")
    where = write_pack_payloads(pack, base / "in")
    env = pack_env(pack)
    r = cli(auditlake, "ingest", "--lake", base / "lake", base / "in", env=env)
    return {"lake": base / "lake", "inputs": base / "in", "where": where, "env": env, "stderr": r.stderr.decode()}


def emf(stderr: str) -> dict:
    return json.loads([line for line in stderr.splitlines() if line.startswith("{") and '"_aws"' in line][-1])


def findings_rows(lake, where="true") -> list[dict]:
    return lakesql.rows(lakesql.connect(lake), f"SELECT * FROM findings WHERE {where}")


def iso_ms(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


# ---- 1. the pack: every rule has its test events ----------------------------------------

def test_every_rule_has_positive_and_negative_events():
    assert len(RULE_FILES) >= 52, [p.name for p in RULE_FILES]
    problems, ids, names, audit_ids = [], {}, {}, {}
    for p in RULE_FILES:
        rule = rule_yaml(p)
        for what, seen in (("id", ids), ("name", names)):
            if rule.get(what) in seen:
                problems.append(f"{p.name}: {what} {rule.get(what)!r} also in {seen[rule.get(what)]}")
            seen[rule.get(what)] = p.name
        if rule.get("name") != p.stem:
            problems.append(f"{p.name}: name {rule.get('name')!r} is not the file stem (schemas/rules/README.md)")
        if rule.get("level") not in LEVELS:
            problems.append(f"{p.name}: level {rule.get('level')!r}")
        t = PACK_TESTS / f"{p.stem}.json"
        if not t.exists():
            problems.append(f"{p.name}: no tests file tests/{t.name}")
            continue
        cases = json.loads(t.read_text())
        id_field = "eventID" if is_trail_rule(rule) else "auditID"
        for kind in ("positive", "negative"):
            events = cases.get(kind)
            if not isinstance(events, list) or not events:
                problems.append(f"tests/{t.name}: no {kind} event")
                continue
            for e in events:
                aid = e.get(id_field)
                if not aid or aid in audit_ids:
                    problems.append(f"tests/{t.name}: {id_field} {aid!r} missing or also in {audit_ids.get(aid)}")
                audit_ids[aid] = t.name
                if is_trail_rule(rule) and e.get("eventSource") != "eks.amazonaws.com" and kind == "positive":
                    problems.append(f"tests/{t.name}: positive {aid} is not an EKS API call")
        for name in cases.get("placeholders") or {}:
            if name not in PLACEHOLDER_ENV:
                problems.append(f"tests/{t.name}: placeholder {name!r} has no setting")
    orphans = sorted({t.stem for t in PACK_TESTS.glob("*.json")} - {p.stem for p in RULE_FILES})
    assert not orphans, f"tests files without a rule: {orphans}"
    assert not problems, "\n".join(problems)


def placeholders_of(path: pathlib.Path) -> list[str]:
    """The `%name%` placeholders a rule file's `|expand` values name."""
    return sorted(set(re.findall(r"\|expand:\s*'?%(\w+)%", path.read_text())))


OFF_WITHOUT_ORG = ("OFF: placeholder %org_accounts% has no values (see schemas/rules/README.md); "
                   "set AUDITLAKE_ORG_ACCOUNTS")


def test_rules_list_shows_every_shipped_rule_as_its_yaml_says(auditlake):
    r = cli(auditlake, "rules", "list", env={"AUDITLAKE_ORG_ACCOUNTS": ""})
    lines = r.stdout.decode().splitlines()
    assert len(lines) == len(RULE_FILES), lines
    off = [p for p in RULE_FILES if placeholders_of(p)]
    assert f"{len(RULE_FILES)} rules ({len(off)} off)" in r.stderr.decode()
    by_name = {}
    for line in lines:
        level, name, rid, *_ = line.split()
        by_name[name] = (level, rid, line)
    for p in RULE_FILES:
        rule = rule_yaml(p)
        level, rid, line = by_name[rule["name"]]
        assert (level, rid) == (rule["level"], rule["id"]), line
        # then the logsource, the techniques (comma-separated, none for a rule without), the
        # title, the file, and why the rule is off (a placeholder without values), if it is
        rest = line.split(rid, 1)[1].strip()
        src = f"{rule['logsource']['product']}/{rule['logsource']['service']}"
        tech = ",".join(techniques(rule))
        why = f" {re.escape(OFF_WITHOUT_ORG)}" if placeholders_of(p) else ""
        assert re.fullmatch(rf"{re.escape(src)}\s+{re.escape(tech)}\s*{re.escape(rule['title'])} "
                            rf"\({re.escape(p.name)}\){why}", rest), line


def test_rules_list_marks_the_outside_organisation_rule_off_until_org_accounts_are_set(auditlake, tmp_path):
    name = "eks_api_access_entry_outside_organisation"
    assert placeholders_of(PACK / f"{name}.yml") == ["org_accounts"]

    def listed(value):
        r = cli(auditlake, "rules", "list", env={"AUDITLAKE_ORG_ACCOUNTS": value})
        lines = r.stdout.decode().splitlines()
        return [x for x in lines if x.split()[1] == name], [x for x in lines if " OFF: " in x], r.stderr.decode()

    for unset in ("", " , "):
        mine, off, err = listed(unset)
        assert len(mine) == 1 and mine[0].endswith(f"({name}.yml) {OFF_WITHOUT_ORG}"), mine
        assert off == mine and f"{len(RULE_FILES)} rules (1 off)" in err, (off, err)
    for value in ("111122223333", "111122223333, 444455556666,111122223333"):
        mine, off, err = listed(value)
        assert len(mine) == 1 and mine[0].endswith(f"({name}.yml)"), mine
        assert off == [] and f"{len(RULE_FILES)} rules (0 off)" in err, (off, err)
    # off, ingest raises nothing for it; with the organisation's accounts, each positive fires
    cases = read_cases(PACK_TESTS / f"{name}.json")
    (tmp_path / "in.json").write_bytes(E.trail_envelope(cases["positive"] + cases["negative"]))
    for value, want in (("", []), (",".join(cases["placeholders"]["org_accounts"]), sorted(e["eventID"] for e in cases["positive"]))):
        lake = tmp_path / f"lake-{len(want)}"
        cli(auditlake, "ingest", "--lake", lake, tmp_path / "in.json", env={"AUDITLAKE_ORG_ACCOUNTS": value})
        assert sorted(f["audit_id"] for f in findings_rows(lake, f"rule_name = '{name}'")) == want, value
    # a value that is not a list of account ids fails start, naming the variable and the entry
    for bad, entry in (("abc", 'entry 0 ("abc")'), ("111122223333,1111222233334", 'entry 1 ("1111222233334")'),
                       ("111122223333;444455556666", 'entry 0 ("111122223333;444455556666")'),
                       ("arn:aws:iam::111122223333:root", "entry 0")):
        for args in (["rules", "list"], ["rules", "sql"], ["ingest", "--lake", tmp_path / "lake", tmp_path / "in.json"]):
            r = cli(auditlake, *args, env={"AUDITLAKE_ORG_ACCOUNTS": bad}, check=False)
            err = r.stderr.decode()
            assert r.returncode == 2 and r.stdout == b"", (args, bad, r.returncode, err)
            assert err.startswith("auditlake: AUDITLAKE_ORG_ACCOUNTS: ") and len(err.strip().splitlines()) == 1, err
            assert entry in err and "12-digit account id" in err, err
        assert not (tmp_path / "lake").exists(), "nothing may be written with a bad setting"


# ---- 2. the pack's events through the real handler --------------------------------------

def test_pack_events_are_ingested_once_and_parsed(pack, pack_lake):
    con = lakesql.connect(pack_lake["lake"])
    n = sum(len(c["positive"]) + len(c["negative"]) for r, c in pack.values() if c and not is_trail_rule(r))
    got = lakesql.rows(con, "SELECT parse_status, count(*) AS n, count(DISTINCT audit_id) AS d FROM eks_audit GROUP BY 1")
    assert got == [{"parse_status": "ok", "n": n, "d": n}], "every test event must reach the rules as a parsed event"
    # every CloudTrail record of an EKS call that changes something is an eks_api_events
    # row (read calls, readOnly, are not rows: they grant nothing)
    calls = sorted(e["eventID"] for r, c in pack.values() if c and is_trail_rule(r) for e in c["positive"] + c["negative"]
                   if e.get("eventSource") == "eks.amazonaws.com" and not e.get("readOnly"))
    assert calls
    assert sorted(r["event_id"] for r in lakesql.rows(con, "SELECT event_id FROM eks_api_events")) == calls
    total = lakesql.rows(con, "SELECT count(*) AS n FROM findings")[0]["n"]
    assert emf(pack_lake["stderr"])["findings"] == total > 0
    assert lakesql.rows(con, "SELECT DISTINCT source_table FROM findings ORDER BY 1") == [
        {"source_table": "eks_api_events"}, {"source_table": "eks_audit"}]


def expected_finding(rule: dict, e: dict, where: dict) -> dict:
    """The columns a finding of `rule` on test event `e` must have, from the event as sent."""
    want = {"rule_name": rule["name"], "rule_title": rule["title"], "severity": rule["level"],
            "mitre_techniques": techniques(rule), "log_group": where["log_group"], "log_stream": where["log_stream"]}
    if not is_trail_rule(rule):
        return want | {"source_table": "eks_audit", "cluster": where["cluster"], "account_id": A,
                       "verb": e.get("verb"), "stage": e.get("stage"), "event_name": None, "target_principal_arn": None}
    who = e.get("userIdentity") or {}
    issuer = (who.get("sessionContext") or {}).get("sessionIssuer") or {}
    return want | {"source_table": "eks_api_events", "event_name": e["eventName"],
                   "cluster": urllib.parse.unquote((e.get("requestParameters") or {})["name"]),
                   "account_id": e["recipientAccountId"], "target_principal_arn": E.eks_call_target(e),
                   "username": who.get("arn"), "aws_arn": who.get("arn"), "aws_access_key_id": who.get("accessKeyId"),
                   "aws_role_arn": issuer.get("arn"), "source_ip": e.get("sourceIPAddress"), "user_agent": e.get("userAgent"),
                   "verb": None, "stage": None, "request_uri": None, "object_resource": None, "response_code": None}


@pytest.mark.parametrize("stem", [p.stem for p in RULE_FILES])
def test_pack_rule_fires_on_its_positives_and_not_on_its_negatives(pack, pack_lake, stem):
    rule, cases = pack[stem]
    if cases is None:
        pytest.skip(f"schemas/rules/tests/{stem}.json does not exist (yet): nothing to run for {stem}")
    con = lakesql.connect(pack_lake["lake"])
    rows = lakesql.rows(con, "SELECT * FROM findings WHERE rule_id = ?", [rule["id"]])
    by_audit = {}
    for r in rows:
        by_audit.setdefault(r["audit_id"], []).append(r)
    where = pack_lake["where"][stem]
    problems = []
    for e in cases["positive"]:
        key = event_key(rule, e)
        got = by_audit.get(key, [])
        if len(got) != 1:
            problems.append(f"positive {key}: {len(got)} finding(s) of {stem}")
            continue
        f = got[0]
        want = expected_finding(rule, e, where)
        have = {k: f[k] for k in want}
        if have != want:
            problems.append(f"positive {key}: {have} != {want}")
        if not re.fullmatch(r"[0-9a-f]{32}", f["finding_id"] or ""):
            problems.append(f"positive {key}: finding_id {f['finding_id']!r} is not 128-bit hex")
        if f["event_time"] is None or f["dt"] != f["event_time"].astimezone(dt.timezone.utc).date().isoformat():
            problems.append(f"positive {key}: dt {f['dt']} vs event_time {f['event_time']}")
    for e in cases["negative"]:
        if event_key(rule, e) in by_audit:
            problems.append(f"negative {event_key(rule, e)}: {stem} fired")
    assert not problems, f"{stem}:\n" + "\n".join(problems)
    # the detections column of each positive's row (eks_audit, or eks_api_events for an
    # EKS API call) holds the rule id
    table, id_col = ("eks_api_events", "event_id") if is_trail_rule(rule) else ("eks_audit", "audit_id")
    dets = {r["id"]: r["detections"] for r in lakesql.rows(
        con, f"SELECT {id_col} AS id, detections FROM {table} WHERE log_group = ? AND log_stream = ?",
        [where["log_group"], where["log_stream"]])}
    missing = [a for a in (event_key(rule, e) for e in cases["positive"]) if rule["id"] not in (dets.get(a) or [])]
    assert not missing, f"{stem}: {table}.detections lacks {rule['id']} for {missing}"
    wrongly = [a for a in (event_key(rule, e) for e in cases["negative"]) if rule["id"] in (dets.get(a) or [])]
    assert not wrongly, f"{stem}: {table}.detections has {rule['id']} for negatives {wrongly}"


# a finding of an EKS API call: its columns from the eks_api_events row `e` (the others NULL)
API_FINDING_COLUMNS = {
    **{c: f"e.{c}" for c in ("event_time", "account_id", "region", "cluster", "log_group", "log_stream", "cwl_event_id",
                             "event_name", "target_principal_arn", "source_ip", "user_agent", *ATTR)},
    "source_table": "'eks_api_events'", "audit_id": "e.event_id", "username": "e.caller_arn",
    "aws_access_key_id": "e.caller_access_key_id", "aws_arn": "e.caller_arn", "aws_role_arn": "e.caller_role_arn",
    "aws_session_name": "e.caller_session_name",
}


def test_detections_column_and_findings_table_agree_row_for_row(pack_lake):
    con = lakesql.connect(pack_lake["lake"])
    for table in ("eks_audit", "eks_api_events"):
        per_row = lakesql.rows(con, f"""
            SELECT e.log_group, e.log_stream, e.cwl_event_id, list_sort(e.detections) AS detections,
                   list_sort(list(f.rule_id) FILTER (WHERE f.rule_id IS NOT NULL)) AS findings
            FROM {table} e LEFT JOIN findings f USING (log_group, log_stream, cwl_event_id)
            GROUP BY ALL""")
        assert len(per_row) == lakesql.rows(con, f"SELECT count(*) AS n FROM {table}")[0]["n"] > 0
        differ = [r for r in per_row if (r["detections"] or []) != (r["findings"] or [])]
        assert not differ, (table, differ[:5])
    # every finding has its event's row, in the table it names
    orphans = lakesql.rows(con, """SELECT f.source_table, f.audit_id FROM findings f
        LEFT JOIN eks_audit e ON f.source_table = 'eks_audit' AND (e.log_group, e.log_stream, e.cwl_event_id) = (f.log_group, f.log_stream, f.cwl_event_id)
        LEFT JOIN eks_api_events a ON f.source_table = 'eks_api_events' AND (a.log_group, a.log_stream, a.cwl_event_id) = (f.log_group, f.log_stream, f.cwl_event_id)
        WHERE e.cwl_event_id IS NULL AND a.cwl_event_id IS NULL""")
    assert orphans == []
    # one row per (rule, event), finding ids unique
    dup = lakesql.rows(con, """SELECT count(*) AS n, count(DISTINCT finding_id) AS ids,
        count(DISTINCT (rule_id, log_group, log_stream, cwl_event_id)) AS keys FROM findings""")[0]
    assert dup["n"] == dup["ids"] == dup["keys"] > 0, dup
    # the findings copy the audit row's columns
    audit_cols = {n for n, _ in lakesql.ddl_columns("eks_audit")}
    own = ("finding_id", "rule_id", "rule_name", "rule_title", "severity", "mitre_techniques", "ingest_time")
    cols = [n for n, _ in lakesql.ddl_columns("findings") if n not in own and n in audit_cols]
    off = lakesql.rows(con, f"""SELECT f.finding_id FROM findings f JOIN eks_audit e USING (log_group, log_stream, cwl_event_id)
        WHERE {' OR '.join(f'f.{c} IS DISTINCT FROM e.{c}' for c in cols)}
           OR f.source_table <> 'eks_audit' OR f.event_name IS NOT NULL OR f.target_principal_arn IS NOT NULL""")
    assert off == []
    # ... and an EKS API call's finding copies its eks_api_events row's (the caller as the
    # audit columns name an AWS identity); the Kubernetes request columns stay NULL
    null = [n for n, _ in lakesql.ddl_columns("findings") if n not in own and n not in API_FINDING_COLUMNS]
    api = lakesql.rows(con, f"""SELECT f.*, {', '.join(f'{e} AS want_{c}' for c, e in API_FINDING_COLUMNS.items())}
        FROM findings f JOIN eks_api_events e USING (log_group, log_stream, cwl_event_id)""")
    assert api and len(api) == lakesql.rows(con, "SELECT count(*) AS n FROM findings WHERE source_table = 'eks_api_events'")[0]["n"]
    for f in api:
        wrong = {c: (f[c], f[f"want_{c}"]) for c in API_FINDING_COLUMNS if f[c] != f[f"want_{c}"]}
        wrong |= {c: f[c] for c in null if f[c] not in (None, [])}
        assert not wrong, (f["rule_name"], f["audit_id"], wrong)


def test_findings_files_layout_and_schema_with_pyarrow(pack_lake):
    lake = pack_lake["lake"]
    files = sorted((lake / "findings").rglob("*.parquet"))
    assert files
    ddl = lakesql.ddl_columns("findings")
    arrow = {"string": pa.string(), "int": pa.int32(), "array<string>": pa.list_(pa.field("element", pa.string())),
             "timestamp": pa.timestamp("ms", tz="UTC")}
    for f in files:
        rel = f.relative_to(lake).as_posix()
        m = re.fullmatch(r"findings/dt=(\d{4}-\d\d-\d\d)/(\d{12})/part-[0-9a-f]{16}\.parquet", rel)
        assert m, rel
        t = pq.read_table(f)
        assert t.schema.names == [n for n, _ in ddl], "column names and order are the DDL's"
        for name, hive in ddl:
            got = t.schema.field(name).type
            want = arrow[hive]
            assert got == want or (pa.types.is_list(got) and got.value_type == pa.string() and hive == "array<string>"), (name, got)
        rows = t.to_pylist()
        assert {r["account_id"] for r in rows} == {m[2]}
        assert {r["event_time"].date().isoformat() for r in rows} == {m[1]}
        assert pq.ParquetFile(f).metadata.row_group(0).column(0).compression == "ZSTD"


def test_a_repeated_ingest_rewrites_the_same_findings_and_alerts(auditlake, pack_lake, tmp_path):
    """Re-ingesting the same input (a Firehose retry, a backfill run twice) overwrites
    the same objects with the same finding ids, and writes the same alert files."""
    lake, alerts = tmp_path / "lake", tmp_path / "alerts"
    alerts.mkdir()
    env = {"AUDITLAKE_ALERT_BUS": f"file://{alerts}", **pack_lake["env"]}
    snaps = []
    for _ in range(2):
        cli(auditlake, "ingest", "--lake", lake, pack_lake["inputs"], env=env)
        ids = sorted(r["finding_id"] for r in findings_rows(lake))
        files = sorted(p.relative_to(lake).as_posix() for p in (lake / "findings").rglob("*.parquet"))
        sent = {p.name: p.read_text() for p in sorted(alerts.glob("*"))}
        snaps.append((ids, files, sent))
    assert snaps[0] == snaps[1]
    assert len(snaps[0][0]) == len(set(snaps[0][0])) > 0
    # and the same ids as the module's lake, ingested separately
    assert snaps[0][0] == sorted(r["finding_id"] for r in findings_rows(pack_lake["lake"]))


# ---- 3. retro-hunt: the rules' SQL finds exactly what ingest found ----------------------

def split_statements(sql: str) -> list[tuple[str, str, str, str]]:
    """`auditlake rules sql` output -> (name, level, title, statement without `;`)."""
    heads = list(re.finditer(r"^-- (\S+) \((\w+)\): (.*)$", sql, re.M))
    assert heads and sql[:heads[0].start()].strip() == "", sql[:300]
    out = []
    for i, h in enumerate(heads):
        chunk = sql[h.start(): heads[i + 1].start() if i + 1 < len(heads) else len(sql)].strip()
        code = "\n".join(line for line in chunk.splitlines() if not line.startswith("--"))
        assert chunk.endswith(";") and code.count(";") == 1, chunk[-300:]
        out.append((h[1], h[2], h[3], chunk[:-1]))
    return out


def retro_hunt(auditlake, lake, *args, env=None, include_off=False) -> list[dict]:
    """Every rule's `auditlake rules sql` statement on DuckDB over the lake's attributed
    views; not those of rules off at ingest (a placeholder without values), unless
    include_off. An aws/cloudtrail rule's rows name the call by event_id: as audit_id
    too, as its findings do."""
    con = lakesql.connect(lake)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    lakesql.materialize(con, "eks_audit_attributed")
    lakesql.materialize(con, "eks_api_events_attributed")
    out = []
    for name, _, _, stmt in split_statements(cli(auditlake, "rules", "sql", *args, env=env).stdout.decode()):
        if "\n-- off at ingest: " in stmt and not include_off:
            continue
        duck = lakesql.athena_to_duckdb(stmt)
        assert "json_query" not in duck and "transform(" not in duck, f"{name}: a lax path the shim does not know:\n{stmt}"
        for r in lakesql.rows(con, stmt):
            if "audit_id" not in r:
                assert "FROM eks_api_events_attributed" in stmt, name
                r["audit_id"] = r["event_id"]
            out.append(r)
    return out


def assert_retro_hunt_equals_findings(auditlake, lake, *args, env=None):
    hunted = retro_hunt(auditlake, lake, *args, env=env)
    con = lakesql.connect(lake)
    found = {tuple(r[k] for k in KEY): r for r in lakesql.rows(con, "SELECT * FROM findings_attributed")}
    got = {tuple(r[k] for k in KEY): r for r in hunted}
    assert len(got) == len(hunted), "a rule's SQL returned an event twice"
    sql_only = sorted(set(got) - set(found))
    ingest_only = sorted(set(found) - set(got))
    assert not sql_only and not ingest_only, (
        f"SQL only: {[(got[k]['rule_name'], got[k]['audit_id']) for k in sql_only][:20]}\n"
        f"ingest only: {[(found[k]['rule_name'], found[k]['audit_id']) for k in ingest_only][:20]}")
    cols = ["rule_name", "rule_title", "severity", "mitre_techniques", "audit_id", "account_id", "cluster", "dt",
            "event_time", "source_ip", "user_agent",
            "principal_type", "principal_name", "principal_arn", "principal_account_id", "role_chain", "attribution_status"]
    api_cols = cols + ["event_name", "target_principal_arn"]
    differ = []
    for k in got:
        want = api_cols if found[k]["source_table"] == "eks_api_events" else cols
        if any(got[k][c] != found[k][c] for c in want):
            differ.append((k, {c: (got[k][c], found[k][c]) for c in want if got[k][c] != found[k][c]}))
    assert not differ, differ[:5]
    return found


def test_retro_hunt_sql_equals_ingest_over_the_pack_lake(auditlake, pack, pack_lake):
    found = assert_retro_hunt_equals_findings(auditlake, pack_lake["lake"], env=pack_lake["env"])
    assert len(found) > len(RULE_FILES)
    trail = {r["name"] for r, c in pack.values() if c and is_trail_rule(r)}
    assert trail and {f["rule_name"] for f in found.values() if f["source_table"] == "eks_api_events"} == trail


def test_retro_hunt_sql_equals_ingest_over_the_demo_lake(auditlake, demo_lake):
    found = assert_retro_hunt_equals_findings(auditlake, demo_lake, env=DEMO_ENV)
    assert found, "the demo raises findings"
    assert {(f["rule_name"], f["principal_name"]) for f in found.values() if f["source_table"] == "eks_api_events"} == {
        ("eks_api_access_entry_outside_organisation", "dave@example.com"), ("eks_api_access_change_denied", "erin@example.com"),
        ("eks_api_cluster_admin_policy_associated", "bob"), ("eks_api_audit_logging_disabled", "bob")}
    # a day range holding the demo's days finds the same; a day without data finds nothing
    days = sorted({r["dt"] for r in found.values()})
    hunted = retro_hunt(auditlake, demo_lake, "--from", days[0], "--to", days[-1], env=DEMO_ENV)
    assert {tuple(r[k] for k in KEY) for r in hunted} == set(found)
    assert retro_hunt(auditlake, demo_lake, "--from", "2020-01-01", "--to", "2020-01-02", env=DEMO_ENV) == []
    # without the organisation's accounts the outside-organisation rule's SQL matches as if
    # the list were empty (its header says so): every access entry of the demo
    off = {"AUDITLAKE_ORG_ACCOUNTS": ""}
    assert retro_hunt(auditlake, demo_lake, "--rule", "eks_api_access_entry_outside_organisation", env=off) == []
    outside = retro_hunt(auditlake, demo_lake, "--rule", "eks_api_access_entry_outside_organisation", env=off, include_off=True)
    assert sorted(r["target_principal_arn"] for r in outside) == sorted(
        ["arn:aws:iam::222222222222:role/platform-eng"] * 2 + ["arn:aws:iam::999900001111:role/vendor-support"]
        + ["arn:aws:iam::333333333333:role/deployer"] * 2)


# ---- 4. late attribution of findings ----------------------------------------------------

def _late_scenario():
    """jdoe (IAM user) -> role jump -> role ops; the ops session reads a Secret."""
    k1, k2 = "ASIADETECTJUMP000001", "ASIADETECTOPS0000001"
    t = "2026-11-26T13:00:00Z"
    hop1 = E.assume_role(t, A, E.iam_user(A, "jdoe"), f"arn:aws:iam::{A}:role/jump", "jdoe", k1, event_id="det-hop1")
    hop2 = E.assume_role("2026-11-26T13:01:00Z", A, E.assumed(A, "jump", "jdoe", k1), f"arn:aws:iam::{A}:role/ops", "jdoe", k2,
                         event_id="det-hop2")
    read = E.audit_event("det-late-1", "2026-11-26T13:30:00Z", f"arn:aws:sts::{A}:assumed-role/ops/jdoe",
                         E.assumed_extra(A, "ops", "jdoe", k2), verb="get", requestURI="/api/v1/namespaces/payments/secrets/db",
                         objectRef={"resource": "secrets", "namespace": "payments", "name": "db", "apiVersion": "v1"})
    return E.audit_envelope(A, "prod", [read]), E.trail_envelope([hop1, hop2])


def test_findings_attributed_names_the_person_behind_a_finding_written_pending(auditlake, tmp_path):
    audit, trail = _late_scenario()
    (tmp_path / "audit.json").write_bytes(audit)
    (tmp_path / "trail.json").write_bytes(trail)
    late, early = tmp_path / "late", tmp_path / "early"
    cli(auditlake, "ingest", "--lake", late, tmp_path / "audit.json")
    cli(auditlake, "ingest", "--lake", late, tmp_path / "trail.json")
    cli(auditlake, "ingest", "--lake", early, tmp_path / "trail.json")
    cli(auditlake, "ingest", "--lake", early, tmp_path / "audit.json")
    cols = ", ".join(ATTR)
    con = lakesql.connect(late)
    written = lakesql.rows(con, "SELECT * FROM findings WHERE audit_id = 'det-late-1'")
    assert [r["rule_name"] for r in written] == ["k8s_secrets_read_by_person"], written
    assert (written[0]["attribution_status"], written[0]["principal_name"]) == ("pending", None)
    fa = lakesql.rows(con, f"SELECT log_group, log_stream, cwl_event_id, {cols} FROM findings_attributed WHERE audit_id = 'det-late-1'")
    ea = lakesql.rows(con, f"""SELECT v.log_group, v.log_stream, v.cwl_event_id, {', '.join('v.' + c for c in ATTR)}
        FROM eks_audit_attributed v JOIN findings f USING (log_group, log_stream, cwl_event_id) WHERE f.audit_id = 'det-late-1'""")
    assert fa == ea and len(fa) == 1
    person = fa[0]
    assert (person["principal_type"], person["principal_name"], person["attribution_status"]) == ("iam_user", "jdoe", "resolved")
    assert person["principal_arn"] == f"arn:aws:iam::{A}:user/jdoe"
    assert person["role_chain"] == [f"arn:aws:iam::{A}:role/jump", f"arn:aws:iam::{A}:role/ops"]
    # the other columns pass through the view unchanged
    other = [n for n, _ in lakesql.ddl_columns("findings") if n not in ATTR] + ["dt"]
    sel = ", ".join(other)
    assert lakesql.rows(con, f"SELECT {sel} FROM findings_attributed") == lakesql.rows(con, f"SELECT {sel} FROM findings")
    # CloudTrail first: resolved at ingest, the same person; the view leaves it as written
    con2 = lakesql.connect(early)
    at_ingest = lakesql.rows(con2, f"SELECT log_group, log_stream, cwl_event_id, {cols} FROM findings")
    assert at_ingest == fa
    assert lakesql.rows(con2, f"SELECT log_group, log_stream, cwl_event_id, {cols} FROM findings_attributed") == at_ingest
    # the retro-hunt over the late lake names the person too
    hunted = retro_hunt(auditlake, late, "--rule", "k8s_secrets_read_by_person")
    assert [(h["audit_id"], h["principal_name"], h["attribution_status"]) for h in hunted] == [("det-late-1", "jdoe", "resolved")]


# ---- 5. alerts ----------------------------------------------------------------------------

def one_rule_per_level(pack) -> set[str]:
    """A rule of each level and log source (with test events), to raise findings of every
    severity, on audit events and on EKS API calls."""
    picked = {}
    for stem, (rule, cases) in sorted(pack.items()):
        if cases:
            picked.setdefault((rule["level"], is_trail_rule(rule)), stem)
    return set(picked.values())


def check_alerts(lake, events: list[dict], level: str):
    """The alert events against the findings table: exactly the findings at or above
    `level`, each once, the person first, every detail field as the finding's."""
    findings = {r["finding_id"]: r for r in findings_rows(lake)}
    assert {r["severity"] for r in findings.values()} - at_or_above(level), "the input must raise findings below the threshold"
    want = {i for i, r in findings.items() if r["severity"] in at_or_above(level)}
    assert want
    got = [e["detail"]["finding_id"] for e in events]
    assert len(got) == len(set(got)), "an alert was sent twice"
    assert set(got) == want
    columns = {n for n, _ in lakesql.ddl_columns("findings")}
    for e in events:
        assert (e["source"], e["detail-type"]) == ("eks-audit-lake", "EKS Audit Finding")
        keys = list(e["detail"])
        assert keys[0] == "principal_name", keys
        assert keys.index("summary") < keys.index("rule_title")
        f = findings[e["detail"]["finding_id"]]
        for k, v in e["detail"].items():
            if k == "summary":
                assert f["rule_title"] in v and f["cluster"] in v, v
            elif k == "event_time":
                assert v == iso_ms(f["event_time"])
            else:
                assert k in columns and v == f[k], (k, v, f[k])
    return want


def drain(sqs, url) -> list[dict]:
    out, idle = [], 0
    while idle < 3:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not got:
            idle += 1
            continue
        idle = 0
        out += [json.loads(m["Body"]) for m in got]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
    return out


@pytest.mark.parametrize("bus_ref, severity", [("name", None), ("name", "medium"), ("arn", "critical")])
def test_alerts_reach_an_sqs_queue_through_eventbridge_on_moto(auditlake, moto, pack, tmp_path, bus_ref, severity):
    eb, sqs = moto.client("events"), moto.client("sqs")
    bus_arn = eb.create_event_bus(Name="audit-findings")["EventBusArn"]
    url = sqs.create_queue(QueueName="audit-alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    eb.put_rule(Name="to-queue", EventBusName="audit-findings", EventPattern=json.dumps({"source": ["eks-audit-lake"]}))
    eb.put_targets(Rule="to-queue", EventBusName="audit-findings", Targets=[{"Id": "q", "Arn": queue_arn}])
    write_pack_payloads(pack, tmp_path / "in", one_rule_per_level(pack))
    env = dict(moto.env(), AUDITLAKE_ALERT_BUS="audit-findings" if bus_ref == "name" else bus_arn, **pack_env(pack))
    if severity:
        env["AUDITLAKE_ALERT_SEVERITY"] = severity
    r = cli(auditlake, "ingest", "--lake", tmp_path / "lake", tmp_path / "in", env=env)
    events = drain(sqs, url)
    want = check_alerts(tmp_path / "lake", events, severity or "high")
    assert emf(r.stderr.decode())["alerts_published"] == len(want)
    if severity == "medium":
        assert any(e["detail"]["severity"] == "medium" for e in events)
    if severity != "critical":
        assert {e["detail"]["source_table"] for e in events} == {"eks_audit", "eks_api_events"}


def test_alerts_written_to_a_directory_with_file_target(auditlake, pack_lake, tmp_path):
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    cli(auditlake, "ingest", "--lake", tmp_path / "lake", pack_lake["inputs"],
        env={"AUDITLAKE_ALERT_BUS": f"file://{alerts}", **pack_lake["env"]})
    files = sorted(alerts.iterdir())
    assert files and all(re.fullmatch(r"alerts-[0-9a-f]{16}\.jsonl", p.name) for p in files), [p.name for p in files]
    events = [json.loads(line) for p in files for line in p.read_text().splitlines()]
    check_alerts(tmp_path / "lake", events, "high")
    by_id = {r["finding_id"]: r for r in findings_rows(tmp_path / "lake")}
    assert all(e["time"] == iso_ms(by_id[e["detail"]["finding_id"]]["event_time"]) for e in events)
    # a lower threshold, another directory: more alerts, the ones above included
    low = tmp_path / "low"
    low.mkdir()
    cli(auditlake, "ingest", "--lake", tmp_path / "lake2", pack_lake["inputs"],
        env={"AUDITLAKE_ALERT_BUS": f"file://{low}", "AUDITLAKE_ALERT_SEVERITY": "LOW", **pack_lake["env"]})
    check_alerts(tmp_path / "lake2", [json.loads(l) for p in sorted(low.iterdir()) for l in p.read_text().splitlines()], "low")


def test_a_failed_publish_fails_the_ingest_naming_eventbridge(auditlake, moto, pack, tmp_path):
    write_pack_payloads(pack, tmp_path / "in", one_rule_per_level(pack))
    env = dict(moto.env(), AUDITLAKE_ALERT_BUS="no-such-bus", **pack_env(pack))
    r = cli(auditlake, "ingest", "--lake", tmp_path / "lake", tmp_path / "in", env=env, check=False)
    err = r.stderr.decode()
    assert r.returncode != 0 and r.returncode != 2, (r.returncode, err)
    assert "EventBridge" in err and "no-such-bus" in err and "ResourceNotFoundException" in err, err
    # the findings were written before anyone was told: a retry rewrites them, sends again
    assert findings_rows(tmp_path / "lake")


@pytest.mark.parametrize("var, value", [("AUDITLAKE_ALERT_SEVERITY", "severe"), ("AUDITLAKE_ALERT_BUS", "my bus"),
                                        ("AUDITLAKE_ALERT_BUS", "file://")])
def test_bad_alert_settings_fail_start_naming_the_variable(auditlake, pack_lake, tmp_path, var, value):
    r = cli(auditlake, "ingest", "--lake", tmp_path / "lake", pack_lake["inputs"], env={var: value}, check=False)
    err = r.stderr.decode()
    assert r.returncode == 2 and f"{var}:" in err and value.strip() in err, err
    assert not (tmp_path / "lake").exists()


# ---- 6. rule files that must fail start ---------------------------------------------------

HEAD = """title: Broken {name}
id: {id}
name: {name}
status: experimental
description: a rule that must not load
logsource:
    product: kubernetes
    service: audit
level: {level}
"""
SELECT_GET = """detection:
    selection:
        verb: get
    condition: selection
"""
BAD_RULES = {
    # case: (file body, what the message must say)
    "yaml_syntax": ("title: T\nid: 0c6c1f6e-0000-4000-8000-000000000001\nname: yaml_syntax\ndetection:\n"
                    "    selection:\n        verb: [get\n    condition: selection\n", ["not YAML", "line 6"]),
    "regex_modifier": (HEAD + "detection:\n    selection:\n        user.username|re: '^admin.*'\n    condition: selection\n",
                       ["modifier `re`", "user.username", "not supported"]),
    "unknown_field": (HEAD + "detection:\n    selection:\n        objectRef.subResource: exec\n    condition: selection\n",
                      ["objectRef.subResource", "is not a field of kubernetes/audit events"]),
    "aggregation": (HEAD + "detection:\n    selection:\n        verb: get\n    condition: selection | count() > 5\n",
                    ["count()", "not supported"]),
    "missing_selection": (HEAD + "detection:\n    selection:\n        verb: get\n    condition: selection and other\n",
                          ["`other`", "not a selection"]),
    "bad_level": (HEAD.replace("{level}", "severe") + SELECT_GET, ["`level`", "severe"]),
    "keyword_list": (HEAD + "detection:\n    keywords:\n        - secrets\n        - exec\n    condition: keywords\n",
                     ["keyword", "not supported"]),
    "duplicate_id": (HEAD.replace("{id}", "a6db7c4a-5921-400f-a05c-96aecbde336c") + SELECT_GET,
                     ["a6db7c4a-5921-400f-a05c-96aecbde336c", "k8s_privileged_container_created"]),
    "missing_detection": (HEAD, ["`detection`"]),
}


def bad_rule_dir(tmp_path, case) -> tuple[pathlib.Path, pathlib.Path]:
    body, _ = BAD_RULES[case]
    d = tmp_path / "rules"
    d.mkdir()
    # a good rule next to it: one bad file fails the lot
    (d / "good.yml").write_text(HEAD.format(name="fine_rule", id="0c6c1f6e-0000-4000-8000-0000000000aa", level="low")
                                + SELECT_GET)
    f = d / f"{case}.yaml"
    f.write_text(body.replace("{name}", f"broken_{case}").replace("{id}", "0c6c1f6e-0000-4000-8000-000000000002")
                 .replace("{level}", "high"))
    return d, f


def assert_names_file_rule_problem(err: str, where: str, case: str):
    _, says = BAD_RULES[case]
    assert err.startswith("auditlake: AUDITLAKE_RULES: ") and len(err.strip().splitlines()) == 1, err
    assert where in err, err
    if case == "yaml_syntax":
        assert "rule #1" in err, err  # a file that does not parse has no name to give
    else:
        assert f"rule broken_{case}:" in err, err
    for s in says:
        assert s in err, (s, err)


@pytest.mark.parametrize("case", sorted(BAD_RULES))
def test_a_bad_rule_file_fails_start_naming_file_rule_and_problem(auditlake, pack_lake, tmp_path, case):
    d, f = bad_rule_dir(tmp_path, case)
    r = cli(auditlake, "rules", "list", "--rules", d, check=False)
    assert r.returncode == 2 and r.stdout == b"", r.stdout
    assert_names_file_rule_problem(r.stderr.decode(), f"{f}", case)
    lake = tmp_path / "lake"
    r = cli(auditlake, "ingest", "--lake", lake, pack_lake["inputs"], env={"AUDITLAKE_RULES": str(d)}, check=False)
    assert r.returncode == 2
    assert_names_file_rule_problem(r.stderr.decode(), f"{f}", case)
    assert not lake.exists(), "nothing may be written with rules that do not load"
    # without the bad file, the directory loads
    f.unlink()
    assert len(cli(auditlake, "rules", "list", "--rules", d).stdout.decode().splitlines()) == len(RULE_FILES) + 1


PAYMENTS_RULE = """title: Payments ConfigMap Read
id: 7d1c2f0e-5b6a-4c3d-9e8f-0a1b2c3d4e5f
name: payments_config_read
status: experimental
description: Someone read the ConfigMap holding the payments service's endpoints.
author: the operator
date: 2026-12-01
tags:
    - attack.discovery
    - attack.t1613
    - attack.credential-access
    - attack.t1552.007
logsource:
    product: kubernetes
    service: audit
detection:
    selection:
        objectRef.resource: configmaps
        objectRef.name: payments-config
        verb:
            - get
            - list
            - watch
        responseStatus.code|lt: 400
    condition: selection
falsepositives:
    - The payments service itself reading its configuration.
level: high
"""
# nested fields, numbers, arrays and a response object: the lax walk on both sides
SCALE_RULE = """title: Deployment Scaled To Many Replicas With An Untrusted Image
id: 2b0f9a6c-3d4e-4f5a-8b7c-6d5e4f3a2b1c
name: big_untrusted_rollout
status: experimental
tags:
    - attack.t1496
logsource:
    product: kubernetes
    service: audit
detection:
    selection:
        objectRef.resource: deployments
        requestObject.spec.replicas|gte: 50
        responseObject.spec.template.spec.containers.image|startswith: 'docker.io/'
    condition: selection
level: medium
"""


def operator_rules(tmp_path) -> pathlib.Path:
    d = tmp_path / "my-rules"
    d.mkdir()
    (d / "payments.yml").write_text(PAYMENTS_RULE)
    (d / "scale.yaml").write_text(SCALE_RULE)
    (d / "notes.txt").write_text("not a rule: ignored\n")
    return d


def payments_events() -> list[dict]:
    at = "2026-11-26T14:00:00Z"
    cm = lambda name: {"resource": "configmaps", "namespace": "payments", "name": name, "apiVersion": "v1"}
    dep = {"resource": "deployments", "namespace": "web", "name": "miner", "apiGroup": "apps", "apiVersion": "v1"}
    user = f"arn:aws:sts::{A}:assumed-role/dev/erin"
    extra = E.assumed_extra(A, "dev", "erin", "ASIAOPERATORRULES001")

    def spec(replicas, *images):
        return {"spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}}}}

    evs = [
        E.audit_event("op-hit", at, user, extra, verb="get", objectRef=cm("payments-config"),
                      requestURI="/api/v1/namespaces/payments/configmaps/payments-config"),
        E.audit_event("op-other-cm", at, user, extra, verb="get", objectRef=cm("payments-flags"),
                      requestURI="/api/v1/namespaces/payments/configmaps/payments-flags"),
        E.audit_event("op-denied", at, user, extra, verb="get", objectRef=cm("payments-config"),
                      requestURI="/api/v1/namespaces/payments/configmaps/payments-config", responseStatus={"code": 403}),
        E.audit_event("op-scale-hit", at, user, extra, verb="patch", objectRef=dep, level="RequestResponse",
                      requestObject={"spec": {"replicas": 120}}, responseObject=spec(120, "public.ecr.aws/x:1", "docker.io/xmrig:6")),
        E.audit_event("op-scale-few", at, user, extra, verb="patch", objectRef=dep, level="RequestResponse",
                      requestObject={"spec": {"replicas": 49.5}}, responseObject=spec(49.5, "docker.io/xmrig:6")),
        E.audit_event("op-scale-string", at, user, extra, verb="patch", objectRef=dep, level="RequestResponse",
                      requestObject={"spec": {"replicas": "500"}}, responseObject=spec("500", "DOCKER.IO/xmrig:6")),
        E.audit_event("op-scale-trusted", at, user, extra, verb="patch", objectRef=dep, level="RequestResponse",
                      requestObject={"spec": {"replicas": 60}}, responseObject=spec(60, "public.ecr.aws/x:1", None)),
    ]
    return [json.loads(e) for e in evs]


def test_s3_rules_prefix_loads_a_good_rule_and_fails_on_a_bad_one(auditlake, moto, tmp_path):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="rules-bucket")
    s3.put_object(Bucket="rules-bucket", Key="rules/payments.yml", Body=PAYMENTS_RULE.encode())
    s3.put_object(Bucket="rules-bucket", Key="elsewhere/ignored.yml", Body=BAD_RULES["regex_modifier"][0].encode())
    env = dict(moto.env(), AUDITLAKE_RULES="s3://rules-bucket/rules/")
    listed = cli(auditlake, "rules", "list", env=env).stdout.decode().splitlines()
    assert len(listed) == len(RULE_FILES) + 1
    mine = [line for line in listed if "payments_config_read" in line]
    assert len(mine) == 1 and mine[0].endswith("(s3://rules-bucket/rules/payments.yml)"), mine
    (tmp_path / "in.json").write_bytes(E.audit_envelope(A, "prod", [json.dumps(e) for e in payments_events()]))
    cli(auditlake, "ingest", "--lake", tmp_path / "lake", tmp_path / "in.json", env=env)
    hits = findings_rows(tmp_path / "lake", "rule_name = 'payments_config_read'")
    assert [h["audit_id"] for h in hits] == ["op-hit"]
    # a bad rule under the prefix fails start, naming the object and the rule
    body = BAD_RULES["unknown_field"][0].replace("{name}", "broken_unknown_field").replace(
        "{id}", "0c6c1f6e-0000-4000-8000-000000000003").replace("{level}", "high")
    s3.put_object(Bucket="rules-bucket", Key="rules/team/broken.yaml", Body=body.encode())
    for args in (["rules", "list"], ["ingest", "--lake", tmp_path / "lake2", tmp_path / "in.json"]):
        r = cli(auditlake, *args, env=env, check=False)
        assert r.returncode == 2, args
        assert_names_file_rule_problem(r.stderr.decode(), "s3://rules-bucket/rules/team/broken.yaml", "unknown_field")
    assert not (tmp_path / "lake2").exists()


# ---- 7. the operator's own rules ----------------------------------------------------------

def test_operator_rule_directory_is_listed_detected_alerted_and_hunted(auditlake, tmp_path):
    d = operator_rules(tmp_path)
    listed = cli(auditlake, "rules", "list", "--rules", d).stdout.decode().splitlines()
    assert len(listed) == len(RULE_FILES) + 2
    line = next(x for x in listed if " payments_config_read " in x)
    assert line.split()[:5] == ["high", "payments_config_read", "7d1c2f0e-5b6a-4c3d-9e8f-0a1b2c3d4e5f", "kubernetes/audit",
                                "T1613,T1552.007"], line
    assert line.endswith(f"Payments ConfigMap Read ({d / 'payments.yml'})"), line
    evs = payments_events()
    (tmp_path / "in.json").write_bytes(E.audit_envelope(A, "prod", [json.dumps(e) for e in evs]))
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    env = {"AUDITLAKE_RULES": str(d), "AUDITLAKE_ALERT_BUS": f"file://{alerts}"}
    cli(auditlake, "ingest", "--lake", tmp_path / "lake", tmp_path / "in.json", env=env)
    mine = findings_rows(tmp_path / "lake", "rule_name IN ('payments_config_read', 'big_untrusted_rollout') ORDER BY audit_id")
    assert [(f["rule_id"], f["audit_id"], f["severity"], f["mitre_techniques"]) for f in mine] == [
        ("7d1c2f0e-5b6a-4c3d-9e8f-0a1b2c3d4e5f", "op-hit", "high", ["T1613", "T1552.007"]),
        ("2b0f9a6c-3d4e-4f5a-8b7c-6d5e4f3a2b1c", "op-scale-hit", "medium", ["T1496"]),
        ("2b0f9a6c-3d4e-4f5a-8b7c-6d5e4f3a2b1c", "op-scale-string", "medium", ["T1496"])]
    det = {r["audit_id"]: r["detections"] for r in lakesql.rows(lakesql.connect(tmp_path / "lake"), "SELECT audit_id, detections FROM eks_audit")}
    assert "7d1c2f0e-5b6a-4c3d-9e8f-0a1b2c3d4e5f" in det["op-hit"]
    assert "7d1c2f0e-5b6a-4c3d-9e8f-0a1b2c3d4e5f" not in det["op-other-cm"] + det["op-denied"]
    sent = [json.loads(l) for p in sorted(alerts.iterdir()) for l in p.read_text().splitlines()]
    payments = [e for e in sent if e["detail"]["rule_name"] == "payments_config_read"]
    assert [e["detail"]["audit_id"] for e in payments] == ["op-hit"]
    assert payments[0]["detail"]["finding_id"] == mine[0]["finding_id"]
    assert not [e for e in sent if e["detail"]["rule_name"] == "big_untrusted_rollout"], "medium is below the default threshold"
    check_alerts(tmp_path / "lake", sent, "high")
    # the retro-hunt with the operator's rules finds the same, through the lax walk on DuckDB
    assert_retro_hunt_equals_findings(auditlake, tmp_path / "lake", "--rules", d)
    assert_retro_hunt_equals_findings(auditlake, tmp_path / "lake", env={"AUDITLAKE_RULES": str(d)})


# an operator's aws/cloudtrail rule reading the raw request and response of the call
ADMIN_GROUP_RULE = """title: Access Entry Put Into An Admin Group
id: 3c1e0b7d-4f5a-4b6c-8d7e-9f0a1b2c3d4e
name: access_entry_admin_group
status: experimental
tags:
    - attack.t1098
logsource:
    product: aws
    service: cloudtrail
detection:
    selection:
        eventName:
            - CreateAccessEntry
            - UpdateAccessEntry
        requestParameters.kubernetesGroups|endswith: '-admins'
        responseElements.accessEntry.username|startswith: 'payments-oncall:'
    platform:
        requestParameters.kubernetesGroups: platform-admins
    condition: selection and not platform
level: high
"""


def test_operator_cloudtrail_rule_reads_request_parameters_and_response_elements(auditlake, tmp_path):
    """requestParameters.* / responseElements.* of an aws/cloudtrail rule: evaluated at
    ingest on the raw call, rendered by `rules sql` as lax paths over request_parameters /
    response_elements, which the retro-hunt runs on DuckDB to the same findings."""
    d = tmp_path / "trail-rules"
    d.mkdir()
    (d / "admin_group.yml").write_text(ADMIN_GROUP_RULE)
    fixtures = ROOT / "tests" / "fixtures" / "cloudtrail_eks"
    create, update = (json.loads((fixtures / f"{n}.json").read_text()) for n in ("CreateAccessEntry", "UpdateAccessEntry"))
    other_user = json.loads(json.dumps(create))
    other_user["eventID"], other_user["responseElements"]["accessEntry"]["username"] = "op-other-user", "oncall:{{SessionName}}"
    (tmp_path / "in.json").write_bytes(E.trail_envelope([create, update, other_user]))
    env = {"AUDITLAKE_RULES": str(d)}
    cli(auditlake, "ingest", "--lake", tmp_path / "lake", tmp_path / "in.json", env=env)
    mine = findings_rows(tmp_path / "lake", "rule_name = 'access_entry_admin_group'")
    # UpdateAccessEntry adds platform-admins; the copy's response names another user
    assert [(f["audit_id"], f["event_name"], f["target_principal_arn"]) for f in mine] == [
        (create["eventID"], "CreateAccessEntry", "arn:aws:iam::111122223333:role/payments-oncall")]
    sql = cli(auditlake, "rules", "sql", "--rule", "access_entry_admin_group", env=env).stdout.decode()
    assert "json_query(request_parameters, " in sql and "json_query(response_elements, " in sql, sql
    assert_retro_hunt_equals_findings(auditlake, tmp_path / "lake", env=env)


def rules_test_results(out: str) -> list[tuple[str, str, set[str]]]:
    """`event N (<auditID>, <status>): <names>|no rule fires` lines (an EKS API call's:
    `(<eventName> <eventID>, ok)`) -> (auditID or eventID, status, rule names), in order."""
    got = []
    for n, line in enumerate(out.splitlines(), 1):
        m = re.fullmatch(r"event (\d+) \(((?:[A-Z]\w+ )?)([^, ]*), (\w+)\): (.*)", line)
        assert m and int(m[1]) == n, line
        got.append((m[3], m[4], set() if m[5] == "no rule fires" else set(m[5].split(", "))))
    return got


def rules_test_lines(out: str) -> dict[str, set[str]]:
    """`auditlake rules test` output, every event parsed: auditID or eventID -> rule names."""
    got = {}
    for key, status, names in rules_test_results(out):
        assert status == "ok", (key, status)
        got[key] = names
    return got


def test_rules_test_prints_what_fires_for_each_event_in_every_input_form(auditlake, tmp_path):
    d = operator_rules(tmp_path)
    evs = payments_events()
    forms = {"array.json": json.dumps(evs, indent=2), "lines.jsonl": "\n".join(json.dumps(e) for e in evs) + "\n",
             "pack.json": json.dumps({"positive": evs[:1], "negative": evs[1:]})}
    results = {}
    for name, text in forms.items():
        (tmp_path / name).write_text(text)
        results[name] = rules_test_lines(cli(auditlake, "rules", "test", "--rules", d, tmp_path / name).stdout.decode())
    assert results["array.json"] == results["lines.jsonl"] == results["pack.json"]
    got = results["array.json"]
    assert list(got) == [e["auditID"] for e in evs]
    assert "payments_config_read" in got["op-hit"]
    assert all("payments_config_read" not in got[a] for a in ("op-other-cm", "op-denied"))
    assert {a for a, names in got.items() if "big_untrusted_rollout" in names} == {"op-scale-hit", "op-scale-string"}
    (tmp_path / "one.json").write_text(json.dumps(evs[0]))
    one = cli(auditlake, "rules", "test", "--rules", d, "--rule", "payments_config_read", tmp_path / "one.json").stdout.decode()
    assert rules_test_lines(one) == {"op-hit": {"payments_config_read"}}
    r = cli(auditlake, "rules", "test", "--rules", d, "--rule", "7d1c2f0e-5b6a-4c3d-9e8f-0a1b2c3d4e5f", tmp_path / "array.json")
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "event 1 (op-hit, ok): payments_config_read"
    assert lines[1] == "event 2 (op-other-cm, ok): no rule fires"
    assert rules_test_lines(r.stdout.decode()) == {e["auditID"]: ({"payments_config_read"} if e["auditID"] == "op-hit" else set())
                                                   for e in evs}
    assert "1 of 7 events matched" in r.stderr.decode()
    # without the operator's rules, the shipped pack alone does not know it
    assert "payments_config_read" not in rules_test_lines(cli(auditlake, "rules", "test", tmp_path / "array.json").stdout.decode())["op-hit"]


def test_rules_test_agrees_with_ingest_on_every_pack_event(auditlake, pack, pack_lake, tmp_path):
    con = lakesql.connect(pack_lake["lake"])
    fired = {}
    for r in lakesql.rows(con, "SELECT audit_id, rule_name FROM findings"):
        fired.setdefault(r["audit_id"], set()).add(r["rule_name"])
    differ = []
    for stem, (rule, cases) in sorted(pack.items()):
        if cases is None:
            continue
        f = tmp_path / f"{stem}.json"
        f.write_text(json.dumps(cases))
        events = cases["positive"] + cases["negative"]
        results = rules_test_results(cli(auditlake, "rules", "test", f, env=pack_lake["env"]).stdout.decode())
        assert len(results) == len(events), stem
        # a read-only call (Describe, List) is no eks_api_events row and meets no rule: "readonly"
        for e, (key, status, names) in zip(events, results):
            if e.get("readOnly"):
                assert (status, names) == ("readonly", set()), (stem, key, status, names)
            else:
                assert status == "ok" and key == event_key(rule, e), (stem, key, status)
        got = {key: names for key, status, names in results if status == "ok"}
        assert rule["name"] in set().union(*got.values()), f"{stem}: rules test fires it on no event"
        for aid, names in got.items():
            if names != fired.get(aid, set()):
                differ.append((stem, aid, sorted(names), sorted(fired.get(aid, set()))))
    assert not differ, differ[:10]


# ---- 8. the rules sql CLI ---------------------------------------------------------------------

def test_rules_sql_prints_one_statement_per_rule_and_checks_its_options(auditlake):
    every = split_statements(cli(auditlake, "rules", "sql").stdout.decode())
    assert len(every) == len(RULE_FILES)
    yamls = {r["name"]: r for r in map(rule_yaml, RULE_FILES)}
    assert {(n, lv, t) for n, lv, t, _ in every} == {(r["name"], r["level"], r["title"]) for r in yamls.values()}
    for name, _, _, stmt in every:
        view = "eks_api_events_attributed" if is_trail_rule(yamls[name]) else "eks_audit_attributed"
        assert f"'{yamls[name]['id']}' AS rule_id" in stmt and f"FROM {view}\n" in stmt, stmt[:500]
    one = split_statements(cli(auditlake, "rules", "sql", "--rule", "k8s_exec_into_pod").stdout.decode())
    assert [s[0] for s in one] == ["k8s_exec_into_pod"]
    by_id = split_statements(cli(auditlake, "rules", "sql", "--rule", yamls["k8s_exec_into_pod"]["id"]).stdout.decode())
    assert by_id == one
    ranged = split_statements(cli(auditlake, "rules", "sql", "--rule", "k8s_exec_into_pod", "--from", "2026-11-01",
                                  "--to", "2026-11-30").stdout.decode())
    assert len(ranged) == 1 and "dt BETWEEN '2026-11-01' AND '2026-11-30'" in ranged[0][3]
    for args, says in ((["--rule", "nope"], "nope"), (["--from", "2026-13-01", "--to", "2026-12-01"], "2026-13-01"),
                       (["--from", "2026-11-01", "--to", "2026-02-30"], "2026-02-30"), (["--from", "2026-11-01"], "--to")):
        r = cli(auditlake, "rules", "sql", *args, check=False)
        assert r.returncode == 2 and r.stdout == b"" and says in r.stderr.decode(), (args, r.stderr)
