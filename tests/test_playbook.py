"""The forensic playbook: schemas/queries/*.sql (issues #5 and #17).

Each query is Athena (Trino) SQL over the attributed views (`eks_audit_attributed`; 09
and 10 also `eks_api_events_attributed`, 10 `findings_attributed`). Here it runs on
DuckDB through lakesql's dialect shim, with the same positional parameters an analyst
passes to Athena as execution parameters, against

- the lake `auditlake demo` writes, asserting the rows its incident must yield, and
- small synthetic tables, for the cases the demo does not cover (flags, stage
  deduplication, thresholds, health endpoints, JSON patches, grants taken back, the
  audit log turned back on).

`python tests/test_playbook.py --write-doc` regenerates the example tables in
docs/playbook.md from the demo lake (set AUDITLAKE_BIN).
"""
from __future__ import annotations

import datetime
import json
import pathlib
import re
import sys
import uuid

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import lakesql  # noqa: E402

QUERIES = lakesql.QUERIES
PLAYBOOK = [
    "01_rbac_binding_changes.sql",
    "02_auth_failure_bursts.sql",
    "03_pod_exec_attach_portforward.sql",
    "04_secrets_access.sql",
    "05_anonymous_allowed.sql",
    "06_aws_auth_changes.sql",
    "07_privileged_workloads.sql",
    "08_principal_activity.sql",
    "09_cluster_admins.sql",
    "10_audit_logging_gaps.sql",
]
PROD = "222222222222"
BOB_ARN = "arn:aws:iam::444444444444:user/bob"
BOB_CHAIN = ["arn:aws:iam::333333333333:role/deployer", "arn:aws:iam::222222222222:role/eks-breakglass"]
SSO_PROVIDER = "arn:aws:iam::222222222222:saml-provider/AWSSSO_0a1b2c3d4e5f6a7b_DO_NOT_DELETE"


# --------------------------------------------------------------------------- helpers

def sql_of(name: str) -> str:
    return (QUERIES / name).read_text()


def header(sql: str) -> list[str]:
    """The leading comment block, without the `--` markers."""
    lines = []
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:].strip())
    return lines


def parameters(sql: str) -> list[str]:
    """Parameter names in the order the header documents them (`--   1  dt_from ...`)."""
    out = []
    for line in header(sql):
        m = re.match(r"^(\d+)\s+([a-z_]+)\s", line + " ")
        if m:
            assert int(m[1]) == len(out) + 1, f"parameters out of order at {line!r}"
            out.append(m[2])
    return out


def strip_comments_and_literals(sql: str) -> str:
    """The SQL with `-- comments` dropped and 'string literals' emptied, left to right."""
    token = re.compile(r"--[^\n]*|'(?:[^']|'')*'|[^-']+|-", re.S)
    return "".join("" if t.startswith("--") else "''" if t.startswith("'") else t for t in token.findall(sql))


def fetch(con, sql: str, params) -> list[dict]:
    """Run Athena SQL on DuckDB; rows as dicts (via Arrow: TIMESTAMPTZ needs no pytz)."""
    return con.sql(lakesql.athena_to_duckdb(sql), params=list(params)).to_arrow_table().to_pylist()


def ts(value: datetime.datetime) -> str:
    """A result timestamp as 'YYYY-MM-DD HH:MM:SS' UTC."""
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# --------------------------------------------------------------------------- the files

def test_every_question_has_its_file():
    present = sorted(p.name for p in QUERIES.glob("*.sql"))
    assert [n for n in PLAYBOOK if n not in present] == []


@pytest.mark.parametrize("name", sorted(p.name for p in QUERIES.glob("*.sql")))
def test_query_file_conventions(name):
    sql = sql_of(name)
    head = header(sql)
    assert head and head[0].startswith("Question:"), "a query starts with its question"
    params = parameters(sql)
    assert params[:2] == ["dt_from", "dt_to"], "the first two parameters are the dt range"
    body = strip_comments_and_literals(sql)
    # as many placeholders as documented parameters, the first two bounding dt
    assert body.count("?") == len(params)
    assert re.search(r"\bWHERE\s+dt\s+BETWEEN\s+\?\s+AND\s+\?", body, re.I)
    # Athena takes execution parameters only in WHERE clauses
    clause = re.compile(r"\b(SELECT|FROM|WHERE|GROUP\s+BY|HAVING|ORDER\s+BY|JOIN|ON|WINDOW|PARTITION\s+BY)\b", re.I)
    for m in re.finditer(r"\?", body):
        last = [c[1].upper() for c in clause.finditer(body, 0, m.start())][-1]
        assert last == "WHERE", f"placeholder at offset {m.start()} is in a {last} clause"
    # reads the views (late attribution) only; one statement, no trailing semicolon
    tables = {t.lower() for t in re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_][A-Za-z0-9_]*)", body, re.I)}
    assert "eks_audit_attributed" in tables
    assert not tables & {"eks_audit", "sts_sessions", "eks_api_events", "findings"}
    assert ";" not in body


# --------------------------------------------------------------------------- the demo lake

@pytest.fixture(scope="module")
def lake(demo_lake):
    con = lakesql.connect(demo_lake)
    con.execute("SET TimeZone = 'UTC'")
    days = [r[0] for r in con.execute("SELECT DISTINCT dt FROM eks_audit ORDER BY dt").fetchall()]
    assert len(days) == 1 and days[0].endswith("-11-20"), days
    return con, days[0]


def demo_params(name: str, day: str, **given) -> list:
    next_day = (datetime.date.fromisoformat(day) + datetime.timedelta(days=1)).isoformat()
    defaults = {
        "dt_from": day, "dt_to": day,
        "principal_arn": BOB_ARN, "principal_name": "bob",
        "window_start": f"{day} 00:00:00", "window_end": f"{next_day} 00:00:00",
        "cluster": "", "grantee": "",
    }
    defaults.update(given)
    return [defaults[p] for p in parameters(sql_of(name))]


def run_demo(lake, name: str, **given) -> list[dict]:
    con, day = lake
    return fetch(con, sql_of(name), demo_params(name, day, **given))


@pytest.mark.parametrize("name", PLAYBOOK)
def test_dt_filter_prunes_everything_outside_the_range(lake, name):
    assert run_demo(lake, name, dt_from="2001-01-01", dt_to="2001-01-31") == []


def test_01_rbac_binding_changes(lake):
    con, day = lake
    rows = run_demo(lake, "01_rbac_binding_changes.sql")
    # erin's denied (403) binding writes are not changes; dave's is the only one
    assert len(rows) == 1, rows
    r = rows[0]
    assert ts(r["event_time"]) == f"{day} 11:00:00"
    assert (r["account_id"], r["cluster"]) == (PROD, "prod-east")
    assert (r["principal_type"], r["principal_name"], r["principal_arn"]) == (
        "identity_center_user", "dave@example.com", SSO_PROVIDER)
    assert r["via_role"] == "arn:aws:iam::222222222222:role/AWSReservedSSO_PowerUserAccess_9f8e7d6c5b4a3f2e"
    assert (r["verb"], r["binding_kind"], r["binding_namespace"], r["binding_name"]) == (
        "create", "clusterrolebindings", None, "anonymous-admin")
    assert (r["role_kind"], r["role_name"]) == ("ClusterRole", "cluster-admin")
    assert json.loads(r["subjects"]) == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}]
    assert r["flags"] == "role cluster-admin, subject system:anonymous"
    assert r["source_ip"] == "203.0.113.10"
    assert r["attribution_status"] == "resolved"


def test_02_auth_failure_bursts(lake):
    con, day = lake
    rows = run_demo(lake, "02_auth_failure_bursts.sql")
    assert len(rows) == 1, rows
    r = rows[0]
    assert (r["principal"], r["principal_type"], r["principal_arn"], r["source_ip"]) == (
        "erin@example.com", "identity_center_user", SSO_PROVIDER, "198.51.100.99")
    assert (r["failures"], r["peak_failures_5m"]) == (60, 60)
    assert ts(r["burst_start"]) == ts(r["first_failure"]) == f"{day} 10:50:00"
    assert ts(r["last_failure"]) == f"{day} 10:51:58"
    assert r["codes"] == "403"
    assert r["clusters"] == f"{PROD}/prod-west"


def test_03_pod_exec_attach_portforward(lake):
    con, day = lake
    rows = run_demo(lake, "03_pod_exec_attach_portforward.sql")
    # exec logs ResponseStarted and ResponseComplete under one audit ID: one session
    assert len(rows) == 1, ("the demo must log both stages of the exec under one audit ID",
                            [(r["audit_id"], ts(r["event_time"])) for r in rows])
    r = rows[0]
    assert ts(r["event_time"]) == f"{day} 11:20:00"
    assert (r["account_id"], r["cluster"], r["namespace"], r["pod"], r["action"]) == (
        PROD, "prod-east", "kube-system", "aws-node-7xk2p", "exec")
    assert (r["container"], r["command"], r["response_code"]) == ("aws-node", "sh", 101)
    assert (r["principal_type"], r["principal_name"], r["principal_arn"]) == ("iam_user", "bob", BOB_ARN)
    assert r["via_role"] == "arn:aws:iam::222222222222:role/eks-breakglass"
    assert r["role_chain"] == BOB_CHAIN
    assert r["source_identity"] == "bob"
    assert r["source_ip"] == "198.51.100.77"


def test_04_secrets_access(lake):
    con, day = lake
    rows = run_demo(lake, "04_secrets_access.sql")
    by = {r["principal"]: r for r in rows}
    assert sorted(by) == ["erin@example.com", "system:anonymous"]
    assert rows[0]["principal"] == "system:anonymous"  # most allowed reads first
    anon = by["system:anonymous"]
    assert (anon["principal_type"], anon["account_id"], anon["cluster"]) == ("anonymous", PROD, "prod-east")
    assert (anon["requests"], anon["allowed"], anon["denied"], anon["lists"], anon["gets"]) == (20, 20, 0, 20, 0)
    assert anon["namespaces"] == "default, kube-system, monitoring, payments"
    assert anon["source_ips"] == "203.0.113.66"
    assert ts(anon["first_seen"]) == f"{day} 11:05:00"
    assert ts(anon["last_seen"]) == f"{day} 11:08:10"
    erin = by["erin@example.com"]
    # erin's probe picks verbs and resources at random: count them independently, from
    # the plain table rather than through the query under test
    want = con.cursor().execute(
        "SELECT count(*), count(*) FILTER (WHERE verb = 'get'), count(*) FILTER (WHERE verb = 'list') "
        "FROM eks_audit WHERE principal_name = 'erin@example.com' AND object_resource = 'secrets' "
        "AND verb IN ('get', 'list', 'watch')").fetchall()[0]
    assert want[0] > 0
    assert (erin["cluster"], erin["requests"], erin["allowed"], erin["denied"]) == ("prod-west", want[0], 0, want[0])
    assert (erin["gets"], erin["lists"], erin["namespaces"], erin["source_ips"]) == (want[1], want[2], "kube-system", "198.51.100.99")


def test_05_anonymous_allowed(lake):
    con, day = lake
    rows = run_demo(lake, "05_anonymous_allowed.sql")
    # the 20 anonymous secret listings; the 1152 health probes from 10.0.0.2 are noise
    assert len(rows) == 20
    assert {(r["account_id"], r["cluster"], r["username"], r["source_ip"], r["user_agent"]) for r in rows} == {
        (PROD, "prod-east", "system:anonymous", "203.0.113.66", "curl/8.5.0")}
    assert {(r["verb"], r["resource"], r["response_code"]) for r in rows} == {("list", "secrets", 200)}
    per_ns = {}
    for r in rows:
        per_ns[r["namespace"]] = per_ns.get(r["namespace"], 0) + 1
    assert per_ns == {"kube-system": 5, "payments": 5, "default": 5, "monitoring": 5}
    assert [ts(r["event_time"]) for r in (rows[0], rows[-1])] == [f"{day} 11:05:00", f"{day} 11:08:10"]
    assert len({r["audit_id"] for r in rows}) == 20
    assert all('"anonymous-admin"' in r["authz_reason"] for r in rows)


def test_06_aws_auth_changes(lake):
    con, day = lake
    rows = run_demo(lake, "06_aws_auth_changes.sql")
    assert len(rows) == 1, rows
    r = rows[0]
    assert ts(r["event_time"]) == f"{day} 10:30:00"
    assert (r["account_id"], r["cluster"], r["verb"], r["response_code"]) == (PROD, "prod-west", "patch", 200)
    assert (r["principal_type"], r["principal_name"], r["principal_arn"]) == (
        "identity_center_user", "alice@example.com", SSO_PROVIDER)
    assert "rolearn: arn:aws:iam::222222222222:role/ci-deploy" in r["map_roles"]
    assert "groups: [system:masters]" in r["map_roles"]
    assert r["grants_system_masters"] is True
    assert r["source_ip"] == "198.51.100.24"


def test_07_privileged_workloads(lake):
    con, day = lake
    rows = run_demo(lake, "07_privileged_workloads.sql")
    # the CI deployment patches (web identity) carry request bodies but nothing privileged
    assert len(rows) == 1, rows
    r = rows[0]
    assert ts(r["event_time"]) == f"{day} 11:25:00"
    assert (r["account_id"], r["cluster"], r["verb"], r["kind"], r["namespace"], r["name"]) == (
        PROD, "prod-east", "create", "pods", "kube-system", "node-debugger")
    assert (r["privileged"], r["host_pid"], r["host_network"], r["host_ipc"]) == (True, True, True, False)
    assert (r["host_paths"], r["added_capabilities"], r["json_patch_to_review"]) == ("/", None, False)
    assert (r["principal_type"], r["principal_name"], r["role_chain"], r["source_identity"]) == (
        "iam_user", "bob", BOB_CHAIN, "bob")
    assert r["response_code"] == 201


def test_08_principal_activity_follows_the_role_chain(lake):
    con, day = lake
    rows = run_demo(lake, "08_principal_activity.sql")
    # bob: 444444444444 user -> deployer (333333333333) -> eks-breakglass (222222222222):
    # one exec session and one pod, in prod-east
    assert [(ts(r["event_time"]), r["verb"], r["resource"], r["subresource"], r["name"]) for r in rows] == [
        (f"{day} 11:20:00", "create", "pods", "exec", "aws-node-7xk2p"),
        (f"{day} 11:25:00", "create", "pods", None, "node-debugger"),
    ]
    for r in rows:
        assert (r["account_id"], r["cluster"], r["source_ip"]) == (PROD, "prod-east", "198.51.100.77")
        assert (r["principal_type"], r["principal_account_id"], r["role_chain"], r["source_identity"]) == (
            "iam_user", "444444444444", BOB_CHAIN, "bob")
        assert (r["attribution_method"], r["attribution_status"]) == ("access_key", "resolved")


def test_08_principal_activity_spans_clusters_and_honours_the_window(lake):
    con, day = lake
    everything = run_demo(lake, "08_principal_activity.sql",
                          principal_arn=SSO_PROVIDER, principal_name="alice@example.com")
    assert {(r["account_id"], r["cluster"]) for r in everything} == {(PROD, "prod-east"), (PROD, "prod-west")}
    assert len(everything) == len({r["audit_id"] for r in everything}) == 61
    window = run_demo(lake, "08_principal_activity.sql",
                      principal_arn=SSO_PROVIDER, principal_name="alice@example.com",
                      window_start=f"{day} 10:30:00", window_end=f"{day} 10:31:00")
    assert [(ts(r["event_time"]), r["cluster"], r["verb"], r["resource"], r["name"]) for r in window] == [
        (f"{day} 10:30:00", "prod-west", "patch", "configmaps", "aws-auth")]
    # the name alone does not identify a person: the provider ARN must match too
    assert run_demo(lake, "08_principal_activity.sql",
                    principal_arn=BOB_ARN, principal_name="alice@example.com") == []


def test_08_principal_activity_names_workloads(lake):
    con, day = lake
    # the Pod Identity operator of prod-west, acting on prod-east through an access entry
    fleet = run_demo(lake, "08_principal_activity.sql", principal_arn=f"arn:aws:eks:us-west-2:{PROD}:cluster/prod-west",
                     principal_name="platform:fleet-operator", window_start=f"{day} 08:00:00", window_end=f"{day} 16:00:00")
    assert len(fleet) == 12
    assert {(r["principal_type"], r["principal_cluster"], r["principal_pod"], r["cluster"], r["resource"], r["subresource"]) for r in fleet} == {
        ("k8s_workload", "prod-west", "fleet-operator-7c9d8b6f4-x2k4q", "prod-east", "deployments", "scale")}
    # the bastion instance: no principal ARN, named by its instance id
    bastion = run_demo(lake, "08_principal_activity.sql", principal_arn="", principal_name="i-0b7e3c9a1f2d4e6a8",
                       window_start=f"{day} 08:00:00", window_end=f"{day} 16:00:00")
    assert len(bastion) == 12 and {(r["principal_type"], r["via_role"]) for r in bastion} == {
        ("ec2_instance", f"arn:aws:iam::{PROD}:role/bastion-host")}
    # the IRSA release job, chained from tools' release-runner into prod's release-deployer
    release = run_demo(lake, "08_principal_activity.sql",
                       principal_arn="arn:aws:iam::444444444444:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/C1A0B2C3D4E5F60718293A4B5C6D7E8F",
                       principal_name="ci:release-runner", window_start=f"{day} 08:00:00", window_end=f"{day} 16:00:00")
    assert [(r["verb"], r["resource"], r["name"]) for r in release] == [("patch", "deployments", "orders-api")] * 3
    assert release[0]["role_chain"] == ["arn:aws:iam::444444444444:role/release-runner", f"arn:aws:iam::{PROD}:role/release-deployer"]


SSO_ROLE = "arn:aws:iam::222222222222:role/aws-reserved/sso.amazonaws.com/us-east-1/AWSReservedSSO_{}"
ADMIN_SSO, POWER_SSO = SSO_ROLE.format("AdministratorAccess_1a2b3c4d5e6f7a8b"), SSO_ROLE.format("PowerUserAccess_9f8e7d6c5b4a3f2e")
DEPLOYER = "arn:aws:iam::333333333333:role/deployer"


def test_09_cluster_admins(lake):
    con, day = lake
    rows = run_demo(lake, "09_cluster_admins.sql")
    got = [(r["cluster"], r["account_id"], r["grantee"], r["granted_via"], r["detail"], ts(r["granted_at"]),
            r["granted_by"], r["granted_by_type"], r["granted_by_arn"], r["role_chain"], r["source_ip"], r["still_granted"],
            r["audit_log_off_at"] and ts(r["audit_log_off_at"]), r["audit_log_off_by"], r["audit_log_back_on_at"],
            r["attribution_status"]) for r in rows]
    off = (f"{day} 15:30:00", "bob", None, "resolved")
    assert got == [
        # alice: namespace admin for platform-eng, through the EKS API (no audit event)
        ("prod-east", PROD, "arn:aws:iam::222222222222:role/platform-eng", "access_policy",
         "AmazonEKSAdminPolicy (namespace: payments)", f"{day} 09:21:00", "alice@example.com", "identity_center_user",
         SSO_PROVIDER, [ADMIN_SSO], "198.51.100.24", True, *off),
        # dave: system:anonymous bound to cluster-admin
        ("prod-east", PROD, "User system:anonymous", "rbac_binding", "ClusterRoleBinding anonymous-admin to ClusterRole cluster-admin",
         f"{day} 11:00:00", "dave@example.com", "identity_center_user", SSO_PROVIDER, [POWER_SSO], "203.0.113.10", True, *off),
        # bob, through deployer -> eks-breakglass: his own deployer role made cluster admin;
        # then he turned the audit log off, and nobody turned it on again
        ("prod-east", PROD, DEPLOYER, "access_policy", "AmazonEKSClusterAdminPolicy (cluster)", f"{day} 11:31:00",
         "bob", "iam_user", BOB_ARN, BOB_CHAIN, "198.51.100.77", True, *off),
        # alice: ci-deploy mapped to system:masters in prod-west's aws-auth; its log stayed on
        ("prod-west", PROD, "arn:aws:iam::222222222222:role/ci-deploy", "aws_auth", "system:masters (mapRoles)",
         f"{day} 10:30:00", "alice@example.com", "identity_center_user", SSO_PROVIDER, [ADMIN_SSO], "198.51.100.24", True,
         None, None, None, "resolved"),
    ]
    # ref names the grant's event: the CloudTrail eventID, the audit ID
    refs = {r["ref"] for r in rows}
    want = {r[0] for r in con.execute(
        "SELECT event_id FROM eks_api_events WHERE event_name = 'AssociateAccessPolicy' AND error_code IS NULL "
        "UNION ALL SELECT audit_id FROM eks_audit WHERE (object_name = 'anonymous-admin' AND verb = 'create') "
        "OR (object_name = 'aws-auth' AND verb = 'patch')").fetchall()}
    assert refs == want and len(refs) == 4
    # erin's denied association, dave's vendor access entry (no policy) are no admins
    assert not [r for r in rows if r["granted_by"] == "erin@example.com" or "vendor-support" in r["grantee"]]
    # one cluster; and the question of the issue: who made this principal a cluster admin,
    # and did anyone turn the audit log off? One query, one row.
    assert [r["grantee"] for r in run_demo(lake, "09_cluster_admins.sql", cluster="prod-west")] == [
        "arn:aws:iam::222222222222:role/ci-deploy"]
    assert len(run_demo(lake, "09_cluster_admins.sql", cluster="prod-east")) == 3
    assert run_demo(lake, "09_cluster_admins.sql", cluster="staging") == []
    answer = run_demo(lake, "09_cluster_admins.sql", grantee=DEPLOYER)
    assert [(r["cluster"], r["granted_by"], r["granted_by_arn"], r["role_chain"], r["still_granted"],
             ts(r["audit_log_off_at"]), r["audit_log_off_by"], r["audit_log_back_on_at"]) for r in answer] == [
        ("prod-east", "bob", BOB_ARN, BOB_CHAIN, True, f"{day} 15:30:00", "bob", None)]


def test_10_audit_logging_gaps(lake):
    con, day = lake
    rows = run_demo(lake, "10_audit_logging_gaps.sql")
    assert len(rows) == 1, rows
    r = rows[0]
    assert (r["cluster"], r["account_id"], ts(r["off_at"]), r["off_by_call"], r["back_on_at"], r["back_on_by"]) == (
        "prod-east", PROD, f"{day} 15:30:00", "UpdateClusterConfig", None, None)
    assert (r["off_by"], r["off_by_type"], r["off_by_arn"], r["off_role_chain"], r["off_source_ip"]) == (
        "bob", "iam_user", BOB_ARN, BOB_CHAIN, "198.51.100.77")
    assert r["authenticator_off"] is True
    assert r["off_event_id"] == con.execute("SELECT event_id FROM eks_api_events WHERE event_name = 'UpdateClusterConfig'").fetchall()[0][0]
    # the audit events around it, counted from the plain table: the hour before, and the
    # tail EKS still delivered while applying the change (none after 15:31)
    before, last_before, after, last_after = con.execute(f"""
        SELECT count(*) FILTER (WHERE event_time < TIMESTAMPTZ '{day} 15:30:00+00'),
               max(event_time) FILTER (WHERE event_time < TIMESTAMPTZ '{day} 15:30:00+00'),
               count(*) FILTER (WHERE event_time >= TIMESTAMPTZ '{day} 15:30:00+00'),
               max(event_time) FILTER (WHERE event_time >= TIMESTAMPTZ '{day} 15:30:00+00')
        FROM eks_audit WHERE cluster = 'prod-east' AND event_time >= TIMESTAMPTZ '{day} 14:30:00+00'""").fetchall()[0]
    assert before > 0 and 0 < after < 20 and ts(last_after) < f"{day} 15:31:00"
    assert (r["audit_events_before"], r["last_audit_event_before"], r["audit_events_after_off"], r["last_audit_event_after_off"]) == (
        before, last_before, after, last_after)
    assert r["eks_api_calls"] == "; ".join([
        f"{day} 09:20:00 CreateAccessEntry arn:aws:iam::222222222222:role/platform-eng by alice@example.com",
        f"{day} 09:21:00 AssociateAccessPolicy arn:aws:iam::222222222222:role/platform-eng AmazonEKSAdminPolicy by alice@example.com",
        f"{day} 10:20:00 CreateAccessEntry arn:aws:iam::999900001111:role/vendor-support by dave@example.com",
        f"{day} 10:55:00 AssociateAccessPolicy arn:aws:iam::222222222222:role/AWSReservedSSO_ReadOnly_5e4d3c2b1a0f9e8d "
        "AmazonEKSClusterAdminPolicy (AccessDeniedException) by erin@example.com",
        f"{day} 11:30:00 CreateAccessEntry {DEPLOYER} by bob",
        f"{day} 11:31:00 AssociateAccessPolicy {DEPLOYER} AmazonEKSClusterAdminPolicy by bob"])
    assert (r["finding_count"], r["findings"]) == (1, "eks_api_audit_logging_disabled (bob)")
    assert run_demo(lake, "10_audit_logging_gaps.sql", cluster="prod-west") == []


# --------------------------------------------------------------------------- synthetic cases

DAY = "2030-01-01"


class Synthetic:
    """Tables named like the views, with their tables' columns, filled row by row: audit
    events (add), EKS API calls (add_call), findings (add_finding)."""

    VIEWS = {"eks_audit_attributed": "eks_audit", "eks_api_events_attributed": "eks_api_events",
             "findings_attributed": "findings"}

    def __init__(self):
        import duckdb

        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        for view, table in self.VIEWS.items():
            cols = [(n, lakesql.duck_type(t)) for n, t in lakesql.ddl_columns(table)] + [("dt", "VARCHAR")]
            self.con.execute(f"CREATE TABLE {view} (" + ", ".join(f'"{n}" {t}' for n, t in cols) + ")")

    def insert(self, view: str, row: dict):
        names = list(row)
        self.con.execute(f"INSERT INTO {view} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                         [row[n] for n in names])

    def add_call(self, at: str, event_name: str, **row):
        """An EKS API call; `by` names the person (principal_name)."""
        row.setdefault("event_id", str(uuid.uuid4()))
        row.setdefault("account_id", "999999999999")
        row.setdefault("cluster", "lab")
        row.setdefault("event_source", "eks.amazonaws.com")
        row.setdefault("caller_arn", f"arn:aws:sts::{row['account_id']}:assumed-role/admin/x")
        row.setdefault("attribution_status", "resolved")
        if "by" in row:
            row["principal_name"] = row.pop("by")
        for key in ("request_parameters", "response_elements"):
            if isinstance(row.get(key), (dict, list)):
                row[key] = json.dumps(row[key])
        row.update(event_name=event_name, dt=DAY, event_time=f"{DAY} {at}+00")
        self.insert("eks_api_events_attributed", row)
        return row["event_id"]

    def add_finding(self, at: str, rule_name: str, **row):
        row.setdefault("finding_id", uuid.uuid4().hex)
        row.setdefault("account_id", "999999999999")
        row.setdefault("cluster", "lab")
        row.setdefault("audit_id", str(uuid.uuid4()))
        row.update(rule_name=rule_name, dt=DAY, event_time=f"{DAY} {at}+00")
        self.insert("findings_attributed", row)

    def add(self, at: str, **row):
        row.setdefault("audit_id", str(uuid.uuid4()))
        row.setdefault("stage", "ResponseComplete")
        row.setdefault("account_id", "999999999999")
        row.setdefault("cluster", "lab")
        row.setdefault("response_code", 200)
        row.setdefault("authz_decision", "allow" if row["response_code"] < 400 else "forbid")
        row.setdefault("parse_status", "ok")
        row.setdefault("dt", DAY)
        for key in ("request_object", "response_object"):
            if isinstance(row.get(key), (dict, list)):
                row[key] = json.dumps(row[key])
        row["event_time"] = row["stage_time"] = f"{DAY} {at}+00"
        self.insert("eks_audit_attributed", row)

    def run(self, name: str, *extra) -> list[dict]:
        return fetch(self.con, sql_of(name), [DAY, DAY, *extra])


def binding(name, role, subjects, kind="ClusterRoleBinding", role_kind="ClusterRole"):
    return {"kind": kind, "metadata": {"name": name}, "roleRef": {"kind": role_kind, "name": role}, "subjects": subjects}


def test_01_flags_on_synthetic_bindings():
    s = Synthetic()
    rb = dict(verb="create", principal_name="x")
    s.add("09:00:00", object_resource="rolebindings", object_namespace="team", object_name="ok",
          request_object=binding("ok", "view", [{"kind": "User", "name": "alice"}], kind="RoleBinding"), **rb)
    s.add("09:01:00", object_resource="rolebindings", object_namespace="team", object_name="sa-admin",
          request_object=binding("sa-admin", "admin", [{"kind": "ServiceAccount", "name": "default", "namespace": "team"}]), **rb)
    s.add("09:02:00", object_resource="clusterrolebindings", object_name="sa-view",
          request_object=binding("sa-view", "view", [{"name": "default", "namespace": "x", "kind": "ServiceAccount"}]), **rb)
    s.add("09:03:00", object_resource="clusterrolebindings", object_name="everyone",
          request_object=binding("everyone", "view", [{"kind": "Group", "name": "system:unauthenticated"},
                                                      {"kind": "Group", "name": "system:authenticated"}]), **rb)
    s.add("09:04:00", object_resource="clusterrolebindings", object_name="sa-as-user",
          request_object=binding("sa-as-user", "edit", [{"kind": "User", "name": "system:serviceaccount:ci:default"}]), **rb)
    # a service account that is not `default` is not flagged
    s.add("09:05:00", object_resource="rolebindings", object_namespace="ci", object_name="deployer",
          request_object=binding("deployer", "edit", [{"kind": "ServiceAccount", "name": "deployer", "namespace": "default"}]), **rb)
    # a delete carries no body; a denied create is not a change; reads are not changes
    s.add("09:06:00", object_resource="clusterrolebindings", object_name="anonymous-admin", verb="delete")
    s.add("09:07:00", object_resource="clusterrolebindings", verb="create", response_code=403)
    s.add("09:08:00", object_resource="clusterrolebindings", verb="get", object_name="anonymous-admin")
    rows = s.run("01_rbac_binding_changes.sql")
    got = [(r["binding_name"], r["role_name"], r["flags"]) for r in rows]
    assert got == [
        ("sa-admin", "admin", "role admin, subject default service account"),
        ("sa-view", "view", "subject default service account"),
        ("everyone", "view", "subject system:unauthenticated, subject system:authenticated"),
        ("sa-as-user", "edit", "subject default service account"),
        ("ok", "view", None),
        ("deployer", "edit", None),
        ("anonymous-admin", None, None),
    ]


def test_02_threshold_and_window_on_synthetic_failures():
    s = Synthetic()

    def failures(n, every_s, start="10:00:00", **kw):
        t0 = datetime.datetime.strptime(f"{DAY} {start}", "%Y-%m-%d %H:%M:%S")
        for i in range(n):
            s.add((t0 + datetime.timedelta(seconds=i * every_s)).strftime("%H:%M:%S"), verb="get",
                  object_resource="pods", **kw)

    failures(19, 5, principal_name="nineteen", source_ip="192.0.2.1", response_code=403)
    failures(20, 15, principal_name="twenty", source_ip="192.0.2.2", response_code=403)  # 285 s: a burst
    failures(30, 20, principal_name="spread", source_ip="192.0.2.3", response_code=403)  # 16 per 5 min
    # 401s have no authenticated user: grouped as '(unauthenticated)'
    failures(25, 1, username="", source_ip="192.0.2.4", response_code=401)
    # same principal, two IPs, 10 each: not a burst per IP
    failures(10, 1, principal_name="two-ips", source_ip="192.0.2.5", response_code=403)
    failures(10, 1, principal_name="two-ips", source_ip="192.0.2.6", response_code=403)
    rows = s.run("02_auth_failure_bursts.sql")
    assert [(r["principal"], r["source_ip"], r["failures"], r["peak_failures_5m"], r["codes"]) for r in rows] == [
        ("(unauthenticated)", "192.0.2.4", 25, 25, "401"),
        ("twenty", "192.0.2.2", 20, 20, "403"),
    ]


def test_03_dedup_and_order_on_synthetic_sessions():
    s = Synthetic()
    ws = str(uuid.uuid4())
    uri = "/api/v1/namespaces/payments/pods/api-1/exec?command=sh&command=-c&command=cat%20%2Fetc%2Fshadow&container=api"
    for stage in ("ResponseStarted", "ResponseComplete"):  # WebSocket exec: verb get, one audit ID
        s.add("08:00:00", audit_id=ws, stage=stage, verb="get", object_resource="pods", object_subresource="exec",
              object_namespace="payments", object_name="api-1", request_uri=uri, response_code=101)
    s.add("09:00:00", verb="create", object_resource="pods", object_subresource="portforward",
          object_namespace="kube-system", object_name="coredns-1",
          request_uri="/api/v1/namespaces/kube-system/pods/coredns-1/portforward?ports=53")
    s.add("09:30:00", verb="create", object_resource="pods", object_subresource="attach",
          object_namespace="default", object_name="x", request_uri="/api/v1/namespaces/default/pods/x/attach?container=%zz")
    s.add("09:40:00", verb="get", object_resource="pods", object_subresource="log", object_namespace="default", object_name="x")
    rows = s.run("03_pod_exec_attach_portforward.sql")
    assert [(r["namespace"], r["action"], r["command"], r["container"]) for r in rows] == [
        ("kube-system", "portforward", None, None),
        ("payments", "exec", "sh -c cat /etc/shadow", "api"),
        ("default", "attach", None, "%zz"),
    ]
    assert rows[1]["audit_id"] == ws


def test_05_health_endpoints_and_denials_on_synthetic_requests():
    s = Synthetic()
    anon = dict(username="system:anonymous", user_groups=["system:unauthenticated"], verb="get")
    for uri in ("/healthz", "/livez", "/readyz", "/version", "/readyz/etcd", "/healthz?verbose=1", "/version/"):
        s.add("10:00:00", request_uri=uri, **anon)
    s.add("10:01:00", request_uri="/api/v1/nodes", object_resource="nodes", **anon)
    s.add("10:02:00", request_uri="/versions-not-health", **anon)
    s.add("10:03:00", request_uri="/api/v1/secrets", object_resource="secrets", response_code=403, **anon)
    # the group alone marks a request anonymous
    s.add("10:04:00", request_uri="/api/v1/namespaces", user_groups=["system:unauthenticated"], username="", verb="list")
    s.add("10:05:00", request_uri="/api/v1/namespaces", username="alice", verb="list")
    rows = s.run("05_anonymous_allowed.sql")
    assert [r["request_uri"] for r in rows] == ["/api/v1/nodes", "/versions-not-health", "/api/v1/namespaces"]


def test_06_aws_auth_writes_on_synthetic_requests():
    s = Synthetic()
    cm = dict(object_resource="configmaps", object_namespace="kube-system")
    s.add("10:00:00", verb="create", request_object={"metadata": {"name": "aws-auth"}, "data": {"mapUsers": "- userarn: x"}}, **cm)
    s.add("10:01:00", verb="update", object_name="aws-auth", response_code=403, **cm)
    s.add("10:02:00", verb="deletecollection", **cm)
    s.add("10:03:00", verb="patch", object_name="coredns", request_object={"data": {"Corefile": "."}}, **cm)
    s.add("10:04:00", verb="get", object_name="aws-auth", **cm)
    s.add("10:05:00", verb="patch", object_name="aws-auth", object_resource="configmaps", object_namespace="default")
    rows = s.run("06_aws_auth_changes.sql")
    assert [(r["verb"], r["response_code"], r["map_users"], r["grants_system_masters"]) for r in rows] == [
        ("create", 200, "- userarn: x", False),
        ("update", 403, None, False),
        ("deletecollection", 200, None, False),
    ]


def test_07_pod_templates_on_synthetic_workloads():
    s = Synthetic()
    w = dict(verb="create", object_namespace="ops")
    tpl = lambda spec: {"spec": {"template": {"spec": spec}}}  # noqa: E731
    s.add("10:00:00", object_resource="cronjobs", object_name="backup", request_object={"spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "c"}], "volumes": [{"name": "d", "hostPath": {"type": "Socket", "path": "/var/run/docker.sock"}}]}}}}}}, **w)
    s.add("10:01:00", object_resource="daemonsets", object_name="agent", request_object=tpl({
        "hostIPC": True, "initContainers": [{"name": "i", "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN", "NET_ADMIN"]}}}],
        "containers": [{"name": "c"}]}), **w)
    s.add("10:02:00", object_resource="deployments", object_name="web", request_object=tpl({
        "containers": [{"name": "c", "securityContext": {"privileged": False, "allowPrivilegeEscalation": False}}]}), **w)
    s.add("10:03:00", object_resource="statefulsets", object_name="db", verb="patch", object_namespace="ops",
          request_object=[{"op": "add", "path": "/spec/template/spec/containers/0/securityContext", "value": {"privileged": True}}])
    s.add("10:04:00", object_resource="pods", object_subresource="ephemeralcontainers", object_name="web-1", verb="patch",
          object_namespace="ops", request_object={"spec": {"ephemeralContainers": [{"name": "debugger", "securityContext": {"privileged": True}}]}})
    # a job's pod template sits at spec.template.spec, next to the job's own fields
    s.add("10:05:00", object_resource="jobs", object_name="migrate", request_object={"spec": {"backoffLimit": 1, "template": {"spec": {
        "hostNetwork": True, "containers": [{"name": "m"}]}}}}, **w)
    s.add("10:06:00", object_resource="pods", object_name="plain", request_object={"spec": {"containers": [{"name": "c"}]}}, **w)
    rows = s.run("07_privileged_workloads.sql")
    got = [(r["kind"], r["name"], r["privileged"], r["host_pid"], r["host_network"], r["host_ipc"],
            r["host_paths"], r["added_capabilities"], r["json_patch_to_review"]) for r in rows]
    assert got == [
        ("cronjobs", "backup", False, False, False, False, "/var/run/docker.sock", None, False),
        ("daemonsets", "agent", False, False, False, True, None, "SYS_ADMIN,NET_ADMIN", False),
        ("statefulsets", "db", False, False, False, False, None, None, True),
        ("pods/ephemeralcontainers", "web-1", True, False, False, False, None, None, False),
        ("jobs", "migrate", False, False, True, False, None, None, False),
    ]


def test_08_window_bounds_on_synthetic_requests():
    s = Synthetic()
    me = dict(principal_arn=BOB_ARN, principal_name="bob", verb="get", object_resource="pods")
    for at in ("09:59:59", "10:00:00", "10:59:59", "11:00:00"):
        s.add(at, object_name=at, **me)
    s.add("10:30:00", object_name="other-bob", principal_arn="arn:aws:iam::555555555555:user/bob", principal_name="bob", verb="get")
    rows = s.run("08_principal_activity.sql", BOB_ARN, "bob", f"{DAY} 10:00:00", f"{DAY} 11:00:00")
    assert [r["name"] for r in rows] == ["10:00:00", "10:59:59"]


POLICY = "arn:aws:eks::aws:cluster-access-policy/"


def test_09_grants_taken_back_or_replaced_on_synthetic_calls_and_writes():
    s = Synthetic()
    role = lambda n: f"arn:aws:iam::999999999999:role/{n}"  # noqa: E731
    assoc = lambda at, who, policy, by="x", scope="cluster", namespaces=(), **kw: s.add_call(  # noqa: E731
        at, "AssociateAccessPolicy", target_principal_arn=role(who), access_policy_arn=POLICY + policy, by=by,
        access_scope_type=scope, access_scope_namespaces=list(namespaces), **kw)
    # a: cluster admin, later disassociated
    assoc("09:00:00", "a", "AmazonEKSClusterAdminPolicy", by="ann")
    s.add_call("10:00:00", "DisassociateAccessPolicy", target_principal_arn=role("a"), access_policy_arn=POLICY + "AmazonEKSClusterAdminPolicy")
    # b: namespace admin, then the same policy cluster-wide (another row; the first is replaced)
    assoc("09:00:00", "b", "AmazonEKSAdminPolicy", by="ann", scope="namespace", namespaces=["team", "ops"])
    assoc("09:30:00", "b", "AmazonEKSAdminPolicy", by="ben")
    # c: associated twice unchanged (one row, its first granter), then its entry deleted
    assoc("09:00:00", "c", "AmazonEKSClusterAdminPolicy", by="ann")
    assoc("09:10:00", "c", "AmazonEKSClusterAdminPolicy", by="ben")
    s.add_call("11:00:00", "DeleteAccessEntry", target_principal_arn=role("c"))
    # no admin: a denied association, a view policy, an access entry alone
    assoc("09:00:00", "d", "AmazonEKSClusterAdminPolicy", error_code="AccessDeniedException")
    assoc("09:00:00", "e", "AmazonEKSViewPolicy")
    s.add_call("09:00:00", "CreateAccessEntry", target_principal_arn=role("f"), kubernetes_groups=["ops"])
    # the cluster's creator is admin unless bootstrapClusterCreatorAdminPermissions is false
    s.add_call("08:00:00", "CreateCluster", caller_role_arn=role("terraform"), by="ci")
    s.add_call("08:00:00", "CreateCluster", cluster="nobody", caller_role_arn=role("terraform"), bootstrap_cluster_creator_admin=False)
    # aws-auth: r1 and user u1 system:masters (block-style groups); a later write of
    # mapRoles leaves r1 out and re-writes r2 (view): r1 is gone, u1 stays
    cm = dict(object_resource="configmaps", object_namespace="kube-system", object_name="aws-auth")
    s.add("09:00:00", verb="create", principal_name="ann", request_object={"metadata": {"name": "aws-auth"}, "data": {
        "mapRoles": f"- rolearn: {role('r1')}\n  username: r1\n  groups:\n    - system:masters\n"
                    f"- groups: [viewers]\n  rolearn: {role('r2')}\n",
        "mapUsers": "- userarn: arn:aws:iam::999999999999:user/u1\n  username: u1\n  groups: [\"system:masters\"]\n"}}, **cm)
    s.add("09:30:00", verb="patch", principal_name="ben", request_object={"data": {"mapRoles": f"- rolearn: {role('r2')}\n  groups: [viewers]\n"}}, **cm)
    s.add("09:40:00", verb="patch", principal_name="ben", response_code=403, request_object={"data": {"mapRoles": ""}}, **cm)
    # RBAC: three subjects bound to cluster-admin, a later update keeps only the group; a
    # RoleBinding later deleted; a binding to a namespaced Role named cluster-admin is none
    crb = dict(object_resource="clusterrolebindings", object_name="admins", principal_name="ann")
    s.add("09:00:00", verb="create", request_object=binding("admins", "cluster-admin", [
        {"kind": "User", "name": "alice"}, {"kind": "Group", "name": "ops"},
        {"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}]), **crb)
    s.add("09:20:00", verb="update", request_object=binding("admins", "cluster-admin", [{"kind": "Group", "name": "ops"}]), **crb)
    rb = dict(object_resource="rolebindings", object_namespace="team", object_name="team-admin", principal_name="ben")
    s.add("09:00:00", verb="create", request_object=binding("team-admin", "cluster-admin", [{"kind": "ServiceAccount", "name": "ci"}],
                                                             kind="RoleBinding"), **rb)
    s.add("12:00:00", verb="delete", **rb)
    s.add("09:00:00", verb="create", object_resource="rolebindings", object_namespace="team", object_name="fake",
          request_object=binding("fake", "cluster-admin", [{"kind": "User", "name": "mallory"}], kind="RoleBinding", role_kind="Role"))
    # the audit log off at 12:00 and on again at 13:00; a cluster deleted after its grant
    s.add_call("12:00:00", "UpdateClusterConfig", audit_logging_enabled=False, by="zed")
    s.add_call("13:00:00", "UpdateClusterConfig", audit_logging_enabled=True, by="ann")
    assoc("09:00:00", "g", "AmazonEKSClusterAdminPolicy", cluster="gone")
    s.add_call("10:00:00", "DeleteCluster", cluster="gone")
    rows = s.run("09_cluster_admins.sql", "", "")
    got = [(r["cluster"], r["grantee"].replace("arn:aws:iam::999999999999:", ""), r["granted_via"], r["detail"],
            r["granted_at"].strftime("%H:%M"), r["granted_by"], r["still_granted"]) for r in rows]
    assert got == [
        ("gone", "role/g", "access_policy", "AmazonEKSClusterAdminPolicy (cluster)", "09:00", "x", False),
        ("lab", "role/terraform", "cluster_creator", "AmazonEKSClusterAdminPolicy (cluster creator)", "08:00", "ci", True),
        ("lab", "Group ops", "rbac_binding", "ClusterRoleBinding admins to ClusterRole cluster-admin", "09:00", "ann", True),
        ("lab", "ServiceAccount kube-system/default", "rbac_binding", "ClusterRoleBinding admins to ClusterRole cluster-admin", "09:00", "ann", False),
        ("lab", "ServiceAccount team/ci", "rbac_binding", "RoleBinding team/team-admin to ClusterRole cluster-admin", "09:00", "ben", False),
        ("lab", "User alice", "rbac_binding", "ClusterRoleBinding admins to ClusterRole cluster-admin", "09:00", "ann", False),
        ("lab", "role/a", "access_policy", "AmazonEKSClusterAdminPolicy (cluster)", "09:00", "ann", False),
        ("lab", "role/b", "access_policy", "AmazonEKSAdminPolicy (namespace: team, ops)", "09:00", "ann", False),
        ("lab", "role/c", "access_policy", "AmazonEKSClusterAdminPolicy (cluster)", "09:00", "ann", False),
        ("lab", "role/r1", "aws_auth", "system:masters (mapRoles)", "09:00", "ann", False),
        ("lab", "user/u1", "aws_auth", "system:masters (mapUsers)", "09:00", "ann", True),
        ("lab", "role/b", "access_policy", "AmazonEKSAdminPolicy (cluster)", "09:30", "ben", True),
    ]
    # the audit log: off after every lab grant, back on at 13:00; none in "gone"
    assert {(r["cluster"], r["audit_log_off_at"] and r["audit_log_off_at"].strftime("%H:%M"), r["audit_log_off_by"],
             r["audit_log_back_on_at"] and r["audit_log_back_on_at"].strftime("%H:%M")) for r in rows} == {
        ("lab", "12:00", "zed", "13:00"), ("gone", None, None, None)}
    # one cluster, one grantee
    assert {r["cluster"] for r in s.run("09_cluster_admins.sql", "gone", "")} == {"gone"}
    assert [r["granted_at"].strftime("%H:%M") for r in s.run("09_cluster_admins.sql", "", "arn:aws:iam::999999999999:role/b")] == [
        "09:00", "09:30"]
    assert s.run("09_cluster_admins.sql", "", "User mallory") == []


def test_10_closed_and_open_gaps_on_synthetic_calls():
    s = Synthetic()
    s.add_call("08:00:00", "UpdateClusterConfig", audit_logging_enabled=True, by="ann")
    off = s.add_call("09:00:00", "UpdateClusterConfig", audit_logging_enabled=False, by="mallory")
    s.add_call("09:10:00", "CreateAccessEntry", target_principal_arn="arn:aws:iam::999999999999:role/x", by="mallory")
    s.add_call("09:20:00", "UpdateClusterConfig", audit_logging_enabled=False, by="mallory")  # already off: no new gap
    s.add_call("10:00:00", "UpdateClusterConfig", audit_logging_enabled=True, by="ann")
    s.add_call("11:00:00", "UpdateClusterConfig", audit_logging_enabled=False, by="mallory", error_code="AccessDeniedException")
    s.add_call("11:30:00", "UpdateClusterConfig", endpoint_public_access=True, by="mallory")  # not a logging change
    s.add_call("12:00:00", "UpdateClusterConfig", audit_logging_enabled=False, authenticator_logging_enabled=False, by="bob")
    # created without the audit log (EKS's default): off from the start
    s.add_call("07:00:00", "CreateCluster", cluster="quiet", by="ci")
    for at in ("07:30:00", "08:30:00", "08:59:00", "09:00:30", "10:30:00", "11:30:00", "12:00:20"):
        s.add(at, verb="get", object_resource="pods")
    s.add_finding("09:05:00", "k8s_secret_read", principal_name="mallory")
    s.add_finding("07:00:00", "too_early", principal_name="mallory")
    rows = s.run("10_audit_logging_gaps.sql", "")
    hm = lambda t: t and t.strftime("%H:%M:%S")  # noqa: E731
    got = [(r["cluster"], hm(r["off_at"]), r["off_by_call"], r["off_by"], r["authenticator_off"], hm(r["back_on_at"]), r["back_on_by"],
            r["audit_events_before"], hm(r["last_audit_event_before"]), r["audit_events_after_off"], hm(r["last_audit_event_after_off"]),
            r["finding_count"], r["findings"]) for r in rows]
    assert got == [
        ("lab", "09:00:00", "UpdateClusterConfig", "mallory", False, "10:00:00", "ann", 2, "08:59:00", 1, "09:00:30", 1, "k8s_secret_read (mallory)"),
        ("lab", "12:00:00", "UpdateClusterConfig", "bob", True, None, None, 1, "11:30:00", 1, "12:00:20", 0, None),
        ("quiet", "07:00:00", "CreateCluster", "ci", False, None, None, 0, None, 0, None, 0, None),
    ]
    assert rows[0]["off_event_id"] == off
    assert rows[0]["eks_api_calls"] == "; ".join(f"{DAY} {c}" for c in (
        "08:00:00 UpdateClusterConfig by ann", "09:10:00 CreateAccessEntry arn:aws:iam::999999999999:role/x by mallory",
        "09:20:00 UpdateClusterConfig by mallory"))
    assert [r["cluster"] for r in s.run("10_audit_logging_gaps.sql", "quiet")] == ["quiet"]


# --------------------------------------------------------------------------- docs/playbook.md

# the columns each example table shows, and how many rows
DOC_EXAMPLES = {
    "01_rbac_binding_changes.sql": ({}, ["event_time", "cluster", "principal_name", "verb", "binding_name",
                                          "role_name", "subjects", "flags", "source_ip"], 5),
    "02_auth_failure_bursts.sql": ({}, ["principal", "source_ip", "failures", "peak_failures_5m", "burst_start",
                                         "last_failure", "codes", "clusters"], 5),
    "03_pod_exec_attach_portforward.sql": ({}, ["event_time", "cluster", "namespace", "pod", "action", "command",
                                                 "principal_name", "role_chain", "source_identity", "source_ip",
                                                 "audit_id"], 5),
    "04_secrets_access.sql": ({}, ["principal", "principal_type", "cluster", "requests", "allowed", "denied",
                                    "namespaces", "source_ips"], 5),
    "05_anonymous_allowed.sql": ({}, ["event_time", "cluster", "verb", "resource", "namespace", "response_code",
                                       "source_ip", "user_agent"], 6),
    "06_aws_auth_changes.sql": ({}, ["event_time", "cluster", "principal_name", "verb", "response_code",
                                      "map_roles", "grants_system_masters", "source_ip"], 5),
    "07_privileged_workloads.sql": ({}, ["event_time", "cluster", "principal_name", "kind", "namespace", "name",
                                          "privileged", "host_pid", "host_network", "host_paths", "source_ip"], 5),
    "08_principal_activity.sql": ({"principal_arn": BOB_ARN, "principal_name": "bob",
                                   "window_start": "{day} 11:00:00", "window_end": "{day} 12:00:00"},
                                  ["event_time", "account_id", "cluster", "verb", "resource", "subresource",
                                   "namespace", "name", "via_role", "role_chain", "source_identity"], 10),
    "09_cluster_admins.sql": ({}, ["cluster", "grantee", "granted_via", "detail", "granted_at", "granted_by", "role_chain",
                                   "still_granted", "audit_log_off_at", "audit_log_off_by"], 10),
    "10_audit_logging_gaps.sql": ({}, ["cluster", "off_at", "off_by", "off_role_chain", "authenticator_off", "back_on_at",
                                       "audit_events_before", "last_audit_event_before", "audit_events_after_off",
                                       "last_audit_event_after_off", "findings"], 5),
}
# columns whose role ARNs the tables show whole (the account matters)
FULL_ARNS = {"grantee"}


def cell(value, full_arns=False) -> str:
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, datetime.datetime):
        text = ts(value)
    elif isinstance(value, list):
        text = " → ".join(str(v).rsplit("/", 1)[-1] if str(v).startswith("arn:") else str(v) for v in value)
    elif isinstance(value, str) and value.startswith("arn:aws:iam::") and ":role/" in value and not full_arns:
        text = value.rsplit("/", 1)[-1]
    elif value is None:
        text = ""
    else:
        text = str(value)
    return text.strip().replace("\n", "<br>").replace("|", "\\|")


def example_table(con, day: str, name: str) -> str:
    given, columns, limit = DOC_EXAMPLES[name]
    params = demo_params(name, day, **{k: v.format(day=day) for k, v in given.items()})
    rows = fetch(con, sql_of(name), params)
    out = ["On the demo lake, with parameters " + " ".join(f"`{p!r}`" for p in params) + ":", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows[:limit]:
        out.append("| " + " | ".join(cell(r[c], c in FULL_ARNS) for c in columns) + " |")
    if len(rows) > limit:
        out.append(f"| … {len(rows) - limit} more rows |" + " |" * (len(columns) - 1))
    out.append("")
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''}; some columns left out.)")
    return "\n".join(out)


def write_doc(doc: pathlib.Path, lake_dir: pathlib.Path) -> None:
    con = lakesql.connect(lake_dir)
    con.execute("SET TimeZone = 'UTC'")
    day = con.execute("SELECT min(dt) FROM eks_audit").fetchall()[0][0]
    text = doc.read_text()
    for name in DOC_EXAMPLES:
        begin, end = f"<!-- example {name} -->", f"<!-- /example {name} -->"
        a, b = text.index(begin) + len(begin), text.index(end)
        text = text[:a] + "\n" + example_table(con, day, name) + "\n" + text[b:]
    doc.write_text(text)


if __name__ == "__main__":
    import os
    import subprocess
    import tempfile

    if sys.argv[1:] != ["--write-doc"]:
        sys.exit("usage: AUDITLAKE_BIN=... python tests/test_playbook.py --write-doc")
    with tempfile.TemporaryDirectory() as tmp:
        lake_dir = pathlib.Path(tmp) / "lake"
        subprocess.run([os.environ["AUDITLAKE_BIN"], "demo", "--lake", str(lake_dir)], check=True,
                       stdout=subprocess.DEVNULL)
        write_doc(lakesql.ROOT / "docs" / "playbook.md", lake_dir)


def test_lakesql_runs_a_saved_query_from_the_command_line(demo_lake, lake):
    """The README's local route to the playbook: `python3 tests/lakesql.py LAKE FILE PARAMS`."""
    import subprocess
    import sys

    con, day = lake
    r = subprocess.run([sys.executable, str(lakesql.ROOT / "tests" / "lakesql.py"), str(demo_lake),
                        str(QUERIES / "06_aws_auth_changes.sql"), day, day], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "alice@example.com" in r.stdout and "prod-west" in r.stdout
    sql = "SELECT count(*) AS bob_rows FROM eks_audit_attributed WHERE principal_name = 'bob'"
    n = lakesql.rows(con, sql)[0]["bob_rows"]
    r = subprocess.run([sys.executable, str(lakesql.ROOT / "tests" / "lakesql.py"), str(demo_lake), "--sql", sql],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and n > 0, r.stderr
    assert re.search(rf"│\s+{n}\s+│", r.stdout), r.stdout
