"""EKS API calls in the lake (issue #17), as users see them: every CloudTrail record of
tests/fixtures/cloudtrail_eks (top level, failed/, variants/) through the real handler,
as a CloudTrail S3 log file (`auditlake ingest`, which trusts the files it is given) and
as the organisation trail's CloudWatch Logs subscription in a Firehose event (`auditlake
invoke`, AUDITLAKE_TRUSTED_TRAILS naming the trail's log group); the `eks_api_events`
table read back with DuckDB and pyarrow, column by column against the records as sent;
the same envelope from a log group that is not a trusted trail writing no row; and late
attribution of a call by the `eks_api_events_attributed` view on DuckDB."""
from __future__ import annotations

import datetime as dt
import json
import pathlib
import re
import urllib.parse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import events as E
import lakesql
from support import ROOT, run
from test_lake import ATTR, invoke

FIXTURES = ROOT / "tests" / "fixtures" / "cloudtrail_eks"
CALL_FILES = sorted(p for p in FIXTURES.rglob("*.json") if p.parent.name != "negative")
# records the feed's filter stops (tests/infra/test_filter_pattern.py); of them, read
# calls and other services' calls are no rows even when a widened filter passes them
NOT_ROWS = ["negative/DescribeCluster.json", "negative/DescribeAccessEntry.json", "negative/ListAccessEntries.json",
            "negative/ec2-RunInstances.json", "negative/iam-CreateRole.json", "negative/sts-GetCallerIdentity.json"]
LOGGING_RULE = "5b0f7f7e-3f0e-4d55-9f2a-6a1d3c9e0a01"  # eks_api_audit_logging_disabled
S3_GROUP = "cloudtrail-s3-backfill"  # the log group `ingest` records for CloudTrail S3 log files


def load(p: pathlib.Path) -> dict:
    return json.loads(p.read_text())


@pytest.fixture(scope="module")
def calls() -> dict[str, dict]:
    """eventID -> the fixture record (one per file)."""
    out = {}
    for p in CALL_FILES:
        rec = load(p)
        assert rec["eventID"] not in out, p
        out[rec["eventID"]] = rec
    assert {"failed", "variants", "cloudtrail_eks"} <= {p.parent.name for p in CALL_FILES}
    return out


def utc(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def logging_switch(req: dict, kind: str):
    """What the call sets log type `kind` to: the last clusterLogging entry naming it."""
    value = None
    for setup in (req.get("logging") or {}).get("clusterLogging") or []:
        if kind in (setup.get("types") or []) and isinstance(setup.get("enabled"), bool):
            value = setup["enabled"]
    return value


def expected_row(rec: dict) -> dict:
    """The typed columns of a call's row, read off the CloudTrail record by hand."""
    req, resp = rec.get("requestParameters") or {}, rec.get("responseElements") or {}
    who = rec["userIdentity"]
    issuer = (who.get("sessionContext") or {}).get("sessionIssuer") or {}
    name = rec["eventName"]
    entry = name.endswith("AccessEntry")
    assoc = resp.get("association") or {}
    scope, vpc, access, oidc = (req.get(k) or {} for k in ("accessScope", "resourcesVpcConfig", "accessConfig", "oidc"))
    target = E.eks_call_target(rec)
    unquoted = lambda k: urllib.parse.unquote(req[k]) if k in req else None  # noqa: E731
    return {
        "account_id": rec["recipientAccountId"], "region": rec["awsRegion"], "cluster": "prod-east",
        "event_time": utc(rec["eventTime"]), "event_id": rec["eventID"], "event_name": name,
        "event_source": "eks.amazonaws.com", "event_type": rec.get("eventType"), "request_id": rec.get("requestID"),
        "source_ip": rec.get("sourceIPAddress"), "user_agent": rec.get("userAgent"),
        "error_code": rec.get("errorCode"), "error_message": rec.get("errorMessage"),
        "caller_type": who["type"], "caller_arn": who["arn"], "caller_account_id": who["accountId"],
        "caller_principal_id": who["principalId"], "caller_access_key_id": who.get("accessKeyId"),
        "caller_user_name": who.get("userName") or issuer.get("userName"), "caller_role_arn": issuer.get("arn"),
        "caller_session_name": who["arn"].rsplit("/", 1)[1] if ":assumed-role/" in who["arn"] else None,
        "target_principal_arn": target, "target_principal_account_id": target.split(":")[4] if target else None,
        "access_entry_type": req.get("type") if entry else None,
        "access_entry_username": req.get("username") if entry else None,
        "kubernetes_groups": req.get("kubernetesGroups") if entry else None,
        "access_policy_arn": unquoted("policyArn"),
        "access_scope_type": scope.get("type"), "access_scope_namespaces": scope.get("namespaces"),
        "pod_identity_namespace": req.get("namespace") or assoc.get("namespace"),
        "pod_identity_service_account": req.get("serviceAccount") or assoc.get("serviceAccount")
        or ((req.get("podIdentityAssociations") or [{}])[0].get("serviceAccount") if name.endswith("Addon") else None),
        "association_id": unquoted("associationId") or assoc.get("associationId"),
        "audit_logging_enabled": logging_switch(req, "audit"),
        "authenticator_logging_enabled": logging_switch(req, "authenticator"),
        "endpoint_public_access": vpc.get("endpointPublicAccess"), "public_access_cidrs": vpc.get("publicAccessCidrs"),
        "authentication_mode": access.get("authenticationMode"),
        "bootstrap_cluster_creator_admin": access.get("bootstrapClusterCreatorAdminPermissions"),
        "identity_provider_config_name": oidc.get("identityProviderConfigName") or (req.get("identityProviderConfig") or {}).get("name"),
        "identity_provider_issuer_url": oidc.get("issuerUrl"),
        "dt": rec["eventTime"][:10],
    }


def s3_log_file(records: list[dict]) -> bytes:
    """A CloudTrail S3 log file as the trail delivers it: gzip JSON, `{"Records": [...]}`."""
    return E.gz(json.dumps({"Records": records}).encode())


def trail_firehose_event(records: list[dict], owner=E.TRAIL_OWNER, group=E.TRAIL_GROUP) -> dict:
    return E.firehose_event([E.gz(E.trail_envelope(records, owner=owner, group=group))])


@pytest.fixture(scope="module")
def lakes(auditlake, calls, tmp_path_factory) -> dict[str, pathlib.Path]:
    """The calls through `ingest` (an S3 log file) and through `invoke` (a Firehose event of
    the trusted trail's subscription), each into a lake of its own."""
    base = tmp_path_factory.mktemp("eks-api")
    records = list(calls.values())
    (base / "trail.json.gz").write_bytes(s3_log_file(records))
    run([auditlake, "ingest", "--lake", base / "ingest", base / "trail.json.gz"])
    r = invoke(auditlake, trail_firehose_event(records), base / "invoke", base)
    assert [x["result"] for x in json.loads(r.stdout)["records"]] == ["Ok"]
    return {"ingest": base / "ingest", "invoke": base / "invoke"}


def duck_rows(lake) -> dict[str, dict]:
    con = lakesql.connect(lake)
    con.execute("SET TimeZone = 'UTC'")
    return {r["event_id"]: r for r in lakesql.rows(con, "SELECT * FROM eks_api_events")}


def arrow_rows(lake) -> dict[str, dict]:
    """The table's files read by pyarrow, `dt` from the path (partition projection's)."""
    out = {}
    for f in sorted((lake / "eks_api_events").rglob("*.parquet")):
        day = re.search(r"/dt=(\d{4}-\d\d-\d\d)/", f.as_posix())[1]
        for r in pq.read_table(f).to_pylist():
            out[r["event_id"]] = dict(r, dt=day)
    return out


@pytest.mark.parametrize("how", ["ingest", "invoke"])
def test_every_call_is_one_row_with_its_columns_as_the_record_says(calls, lakes, how):
    lake = lakes[how]
    for reader, rows in (("duckdb", duck_rows(lake)), ("pyarrow", arrow_rows(lake))):
        assert sorted(rows) == sorted(calls), reader
        problems = []
        for event_id, rec in calls.items():
            row = rows[event_id]
            want = expected_row(rec)
            have = {k: row[k] for k in want}
            have["event_time"] = have["event_time"].astimezone(dt.timezone.utc)
            if have != want:
                problems.append((rec["eventName"], {k: (have[k], want[k]) for k in want if have[k] != want[k]}))
            # the raw request and response, as the record holds them
            if json.loads(row["request_parameters"]) != rec["requestParameters"]:
                problems.append((rec["eventName"], "request_parameters", row["request_parameters"]))
            if (json.loads(row["response_elements"]) if row["response_elements"] is not None else None) != rec.get("responseElements"):
                problems.append((rec["eventName"], "response_elements", row["response_elements"]))
            # where it came from; no STS record in the lake: the caller is not named yet
            group = S3_GROUP if how == "ingest" else E.TRAIL_GROUP
            if row["log_group"] != group or not row["log_stream"] or not row["cwl_event_id"] or row["ingest_time"] is None:
                problems.append((rec["eventName"], "stamps", row["log_group"], row["log_stream"], row["cwl_event_id"]))
            if (row["attribution_status"], row["principal_name"], row["principal_arn"]) != ("pending", None, None):
                problems.append((rec["eventName"], "attribution", row["attribution_status"], row["principal_name"]))
            if not isinstance(row["detections"], list):
                problems.append((rec["eventName"], "detections", row["detections"]))
        assert not problems, (reader, problems)


def test_columns_the_issue_names(calls, lakes):
    """The columns an analyst reads first, spelled out for the records that set them."""
    by_file = {p.relative_to(FIXTURES).as_posix(): load(p)["eventID"] for p in CALL_FILES}
    got = duck_rows(lakes["invoke"])
    one = lambda name: got[by_file[name]]  # noqa: E731
    assert {r["cluster"] for r in got.values()} == {"prod-east"}
    assert {r["account_id"] for r in got.values()} == {"111122223333"}
    create = one("CreateAccessEntry.json")
    assert (create["target_principal_arn"], create["kubernetes_groups"], create["access_entry_type"]) == (
        "arn:aws:iam::111122223333:role/payments-oncall", ["payments-admins"], "STANDARD")
    # a URI member, percent-encoded in the record, decoded in the row
    assoc = one("AssociateAccessPolicy.json")
    assert load(FIXTURES / "AssociateAccessPolicy.json")["requestParameters"]["principalArn"].startswith("arn%3Aaws%3Aiam")
    assert (assoc["target_principal_arn"], assoc["access_policy_arn"], assoc["access_scope_type"], assoc["access_scope_namespaces"]) == (
        "arn:aws:iam::111122223333:role/payments-oncall", "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy",
        "namespace", ["payments", "payments-batch"])
    disassoc = one("DisassociateAccessPolicy.json")
    assert disassoc["access_policy_arn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy"
    assert disassoc["response_elements"] is None
    # the audit log switched off: a boolean, and the logging rule's id in detections
    off = one("UpdateClusterConfig.json")
    assert (off["audit_logging_enabled"], off["authenticator_logging_enabled"], off["endpoint_public_access"]) == (False, False, None)
    assert LOGGING_RULE in off["detections"]
    public = one("variants/UpdateClusterConfig-endpointAccess.json")
    assert (public["audit_logging_enabled"], public["endpoint_public_access"], public["public_access_cidrs"]) == (None, True, ["0.0.0.0/0"])
    assert one("variants/UpdateClusterConfig-accessConfig.json")["authentication_mode"] == "API_AND_CONFIG_MAP"
    denied = one("failed/AssociateAccessPolicy-AccessDenied.json")
    assert (denied["error_code"], denied["target_principal_arn"], denied["response_elements"]) == (
        "AccessDeniedException", "arn:aws:iam::111122223333:role/developer", None)
    assert "not authorized to perform: eks:AssociateAccessPolicy" in denied["error_message"]
    pod = one("CreatePodIdentityAssociation.json")
    assert (pod["target_principal_arn"], pod["pod_identity_namespace"], pod["pod_identity_service_account"]) == (
        "arn:aws:iam::111122223333:role/payments-ledger-writer", "payments", "ledger-writer")
    # the other calls are not errors
    assert {r["event_id"] for r in got.values() if r["error_code"]} == {denied["event_id"]}


def test_files_layout_and_schema_with_pyarrow(lakes):
    ddl = lakesql.ddl_columns("eks_api_events")
    arrow = {"string": pa.string(), "boolean": pa.bool_(), "timestamp": pa.timestamp("ms", tz="UTC")}
    for lake in lakes.values():
        files = sorted((lake / "eks_api_events").rglob("*.parquet"))
        assert files
        for f in files:
            rel = f.relative_to(lake).as_posix()
            m = re.fullmatch(r"eks_api_events/dt=(\d{4}-\d\d-\d\d)/(\d{12})/part-[0-9a-f]{16}\.parquet", rel)
            assert m, rel
            t = pq.read_table(f)
            assert t.schema.names == [n for n, _ in ddl], "column names and order are the DDL's"
            for name, hive in ddl:
                got = t.schema.field(name).type
                if hive == "array<string>":
                    assert pa.types.is_list(got) and got.value_type == pa.string(), (name, got)
                else:
                    assert got == arrow[hive], (name, got)
            rows = t.to_pylist()
            assert {r["account_id"] for r in rows} == {m[2]}
            assert {r["event_time"].date().isoformat() for r in rows} == {m[1]}
            times = [r["event_time"] for r in rows]
            assert times == sorted(times), "rows sorted by event time"
            assert pq.ParquetFile(f).metadata.row_group(0).column(0).compression == "ZSTD"


def test_records_that_are_no_eks_write_call_are_no_rows(auditlake, tmp_path):
    records = [load(FIXTURES / n) for n in NOT_ROWS]
    (tmp_path / "trail.json.gz").write_bytes(s3_log_file(records))
    run([auditlake, "ingest", "--lake", tmp_path / "ingest", tmp_path / "trail.json.gz"])
    invoke(auditlake, trail_firehose_event(records), tmp_path / "invoke", tmp_path)
    for lake in ("ingest", "invoke"):
        assert not list((tmp_path / lake).rglob("eks_api_events/**/*.parquet")), lake


@pytest.mark.parametrize("owner, group", [
    ("111122223333", E.TRAIL_GROUP),  # a member account's log group named like the trail's
    (E.TRAIL_OWNER, "aws-cloudtrail-logs-o-other"),  # the trusted account, another log group
])
def test_the_same_envelope_from_an_untrusted_log_group_writes_no_row(auditlake, calls, tmp_path, owner, group):
    r = invoke(auditlake, trail_firehose_event(list(calls.values()), owner=owner, group=group), tmp_path / "lake", tmp_path)
    # the record is processed (kept in the raw archive), its CloudTrail records counted as untrusted
    assert [x["result"] for x in json.loads(r.stdout)["records"]] == ["Ok"]
    emf = json.loads([line for line in r.stderr.decode().splitlines() if line.startswith("{")][-1])
    assert (emf["sts_untrusted"], emf["eks_api_events"], emf["findings"]) == (len(calls), 0, 0)
    for table in ("eks_api_events", "findings", "sts_sessions"):
        assert not list((tmp_path / "lake").rglob(f"{table}/**/*.parquet")), table
    # the trusted trail's copy of the same calls is written
    invoke(auditlake, trail_firehose_event(list(calls.values())), tmp_path / "trusted", tmp_path)
    assert sorted(duck_rows(tmp_path / "trusted")) == sorted(calls)


# ---- late attribution -------------------------------------------------------------------

BOB = "arn:aws:iam::444455556666:user/bob"
JUMP = "arn:aws:iam::111122223333:role/jump"
DEVELOPER = "arn:aws:iam::111122223333:role/developer"


def bob_chain(key: str) -> list[dict]:
    """IAM user bob (444455556666) -> role jump -> role developer, whose session holds `key`
    (the key of the denied AssociateAccessPolicy fixture)."""
    def hop(at, caller, role, k, event_id):
        e = E.assume_role(at, "111122223333", caller, role, "bob", k, event_id=event_id)
        e["responseElements"]["credentials"]["expiration"] = "Mar 10, 2025, 11:00:00 PM"
        return e

    return [hop("2025-03-10T10:00:00Z", E.iam_user("444455556666", "bob"), JUMP, "ASIAEKSAPIJUMP000001", "eks-api-hop1"),
            hop("2025-03-10T10:01:00Z", E.assumed("111122223333", "jump", "bob", "ASIAEKSAPIJUMP000001"), DEVELOPER, key,
                "eks-api-hop2")]


def test_view_names_the_person_behind_a_call_written_pending(auditlake, tmp_path):
    call = load(FIXTURES / "failed" / "AssociateAccessPolicy-AccessDenied.json")
    sts = bob_chain(call["userIdentity"]["accessKeyId"])
    (tmp_path / "call.json.gz").write_bytes(s3_log_file([call]))
    (tmp_path / "sts.json").write_bytes(E.trail_envelope(sts))
    # together: one log file (one batch), the call even ahead of the AssumeRole chain behind it
    (tmp_path / "together.json.gz").write_bytes(s3_log_file([call] + sts))
    late, together = tmp_path / "late", tmp_path / "together"
    run([auditlake, "ingest", "--lake", late, tmp_path / "call.json.gz"])
    run([auditlake, "ingest", "--lake", late, tmp_path / "sts.json"])  # a later run
    run([auditlake, "ingest", "--lake", together, tmp_path / "together.json.gz"])
    cols = ", ".join(ATTR)
    con = lakesql.connect(late)
    written = lakesql.rows(con, f"SELECT {cols} FROM eks_api_events")
    assert [(w["attribution_status"], w["principal_name"]) for w in written] == [("pending", None)]
    viewed = lakesql.rows(con, f"SELECT {cols} FROM eks_api_events_attributed")
    assert len(viewed) == 1
    person = viewed[0]
    assert (person["principal_type"], person["principal_name"], person["principal_arn"], person["principal_account_id"]) == (
        "iam_user", "bob", BOB, "444455556666")
    assert person["role_chain"] == [JUMP, DEVELOPER]
    assert (person["attribution_method"], person["attribution_status"]) == ("access_key", "resolved")
    # both in one batch: ingest resolves the call itself, to the same person; the view
    # leaves a resolved row as written
    con2 = lakesql.connect(together)
    at_ingest = lakesql.rows(con2, f"SELECT {cols} FROM eks_api_events")
    assert at_ingest == viewed
    assert lakesql.rows(con2, f"SELECT {cols} FROM eks_api_events_attributed") == at_ingest
    # every other column passes through the view unchanged
    other = ", ".join([n for n, _ in lakesql.ddl_columns("eks_api_events") if n not in ATTR] + ["dt"])
    assert lakesql.rows(con, f"SELECT {other} FROM eks_api_events_attributed") == lakesql.rows(con, f"SELECT {other} FROM eks_api_events")
    # the denied call's finding is named by findings_attributed as well
    found = lakesql.rows(con, f"SELECT rule_name, {cols} FROM findings_attributed")
    assert [(f["rule_name"], f["principal_name"], f["role_chain"]) for f in found] == [
        ("eks_api_access_change_denied", "bob", [JUMP, DEVELOPER])]
