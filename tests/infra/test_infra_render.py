"""infra/render.py: the generated parts of central.yaml follow schemas/athena/*.sql.

The column comparison below parses the SQL with its own small line-based reader, not
with render.py's parser, so a bug in the generator cannot hide itself.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from infra_support import INFRA, REPO, load, render

ATHENA = REPO / "schemas" / "athena"
QUERIES = REPO / "schemas" / "queries"
COLUMN_LINE = re.compile(r"^\s*`([^`]+)`\s+(\S+)(?:\s+COMMENT\s+'.*')?,?\s*$")
PROPERTY = re.compile(r"^\s*'([^']+)'='([^']*)',?\s*$")


def sql_tables() -> dict[str, dict]:
    """{table: {columns, partition_keys, properties}} read line by line from the DDL files."""
    out = {}
    for path in sorted(ATHENA.glob("*.sql")):
        text = path.read_text()
        m = re.search(r"CREATE EXTERNAL TABLE (?:IF NOT EXISTS )?`?(\w+)`? \(\n(.*?)\n\)\n", text, re.S)
        if not m:
            continue
        cols = [COLUMN_LINE.match(line).groups() for line in m.group(2).splitlines()]
        part = re.search(r"PARTITIONED BY \((.*?)\)\n", text).group(1)
        pkeys = re.findall(r"`(\w+)`\s+(\w+)", part)
        props_block = re.search(r"TBLPROPERTIES \(\n(.*?)\n\);", text, re.S).group(1)
        props = dict(PROPERTY.match(line).groups() for line in props_block.splitlines())
        out[m.group(1)] = {"columns": cols, "partition_keys": pkeys, "properties": props}
    return out


def glue_tables(template: dict) -> dict[str, dict]:
    out = {}
    for res in template["Resources"].values():
        if res["Type"] == "AWS::Glue::Table":
            ti = res["Properties"]["TableInput"]
            out[ti["Name"]] = ti
    return out


def test_athena_ddl_is_checked_in():
    names = sorted(p.name for p in ATHENA.glob("*.sql"))
    assert {"eks_audit.sql", "sts_sessions.sql", "eks_audit_attributed.sql"} <= set(names), (
        f"schemas/athena/ holds {names}; the schemas crate renders these files")


def test_central_yaml_is_up_to_date_with_the_sql():
    """The generator in check mode: fails when central.yaml drifted from schemas/."""
    r = subprocess.run([sys.executable, str(INFRA / "render.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{r.stdout[-4000:]}\n{r.stderr}"


def test_glue_columns_equal_the_ddl_columns():
    sql = sql_tables()
    glue = glue_tables(load("central.yaml"))
    assert set(sql) == {"eks_audit", "sts_sessions", "findings", "eks_api_events"} and set(glue) == set(sql)
    for name, t in sql.items():
        ti = glue[name]
        got = [(c["Name"], c["Type"]) for c in ti["StorageDescriptor"]["Columns"]]
        assert got == t["columns"], f"{name}: Glue columns differ from schemas/athena/{name}.sql"
        got_pk = [(c["Name"], c["Type"]) for c in ti["PartitionKeys"]]
        assert got_pk == t["partition_keys"] == [("dt", "string")]


def test_glue_table_properties_equal_the_ddl_properties():
    sql = sql_tables()
    glue = glue_tables(load("central.yaml"))
    for name, t in sql.items():
        params = glue[name]["Parameters"]
        for key, value in t["properties"].items():
            if "LAKE_BUCKET" in value:
                sub, variables = params[key]["Fn::Sub"]
                # ${dt} must be written ${!dt} inside Fn::Sub.
                expected = value.replace("${", "${!").replace(
                    "s3://LAKE_BUCKET/LAKE_PREFIX/", "s3://${LakeBucket}/${KeyPrefix}")
                assert sub == expected
                assert variables == {"KeyPrefix": {"Fn::If": ["HasLakePrefix", {"Fn::Sub": "${LakePrefix}/"}, ""]}}
            else:
                assert params[key] == value, f"{name}: {key}"
        assert params["projection.enabled"] == "true" and params["projection.dt.type"] == "date"
        loc = glue[name]["StorageDescriptor"]["Location"]["Fn::Sub"][0]
        assert loc == "s3://${LakeBucket}/${KeyPrefix}" + name + "/"
        assert glue[name]["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")


def test_view_is_a_named_query_with_the_sql_statement():
    text = (ATHENA / "eks_audit_attributed.sql").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--")).strip().rstrip(";").rstrip()
    t = load("central.yaml")
    q = t["Resources"]["ViewQueryEksAuditAttributed"]
    assert q["Type"] == "AWS::Athena::NamedQuery"
    assert q["Properties"]["QueryString"] == body
    assert q["Properties"]["QueryString"].startswith("CREATE OR REPLACE VIEW eks_audit_attributed AS")
    assert q["Properties"]["Database"] == {"Ref": "GlueDatabase"}
    assert t["Outputs"]["ViewQueryEksAuditAttributedId"]["Value"] == {"Ref": "ViewQueryEksAuditAttributed"}


def test_one_saved_query_per_file_in_schemas_queries():
    files = sorted(QUERIES.glob("*.sql")) if QUERIES.is_dir() else []
    t = load("central.yaml")
    saved = {lid: r for lid, r in t["Resources"].items() if lid.startswith("SavedQuery")}
    assert len(saved) == len(files)
    for f in files:
        lid = render.logical_id("SavedQuery", f.stem)
        assert saved[lid]["Properties"]["QueryString"] == f.read_text().strip() + "\n"


# ------------------------------------------------- generator behaviour on scratch copies

SAMPLE_TABLE = """-- Generated by `auditlake ddl` from schemas/src/lib.rs; do not edit by hand.
-- Objects: s3://LAKE_BUCKET/LAKE_PREFIX/things/dt=YYYY-MM-DD/part-<hash>.parquet
CREATE EXTERNAL TABLE IF NOT EXISTS things (
  `id`        string COMMENT 'it''s the id',
  `seen`      timestamp COMMENT 'when',
  `tags`      array<string> COMMENT 'a, b',
  `extra`     map<string,array<string>> COMMENT 'user.extra (map)',
  `price`     decimal(10,2),
  `code`      int COMMENT 'x'
)
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION 's3://LAKE_BUCKET/LAKE_PREFIX/things/'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.dt.type'='date',
  'storage.location.template'='s3://LAKE_BUCKET/LAKE_PREFIX/things/dt=${dt}/',
  'parquet.compression'='ZSTD'
);
"""
SAMPLE_VIEW = """-- Generated by `auditlake ddl`; do not edit by hand.
-- Things with tags.
CREATE OR REPLACE VIEW thing_view AS
SELECT id, 'a;b' AS s -- not a statement end;
FROM things;
"""


@pytest.fixture
def scratch(tmp_path):
    schemas = tmp_path / "schemas"
    (schemas / "athena").mkdir(parents=True)
    (schemas / "athena" / "things.sql").write_text(SAMPLE_TABLE)
    (schemas / "athena" / "thing_view.sql").write_text(SAMPLE_VIEW)
    template = tmp_path / "central.yaml"
    shutil.copy(INFRA / "central.yaml", template)
    return schemas, template


def run(schemas: pathlib.Path, template: pathlib.Path, *extra: str) -> int:
    return render.main(["--schemas", str(schemas), "--template", str(template), *extra])


def test_check_mode_detects_drift_and_write_mode_fixes_it(scratch, capsys):
    schemas, template = scratch
    assert run(schemas, template, "--check") == 1  # real tables vs scratch SQL: stale
    assert run(schemas, template) == 0
    assert run(schemas, template, "--check") == 0
    before = template.read_text()
    ddl = schemas / "athena" / "things.sql"
    ddl.write_text(ddl.read_text().replace("`code`      int", "`code`      bigint"))
    capsys.readouterr()
    assert run(schemas, template, "--check") == 1
    out = capsys.readouterr().out
    assert "-          - {Name: code, Type: int" in out and "+          - {Name: code, Type: bigint" in out
    assert template.read_text() == before, "check mode must not write"
    assert run(schemas, template) == 0
    cols = glue_tables(render.load_template(template))["things"]["StorageDescriptor"]["Columns"]
    assert [(c["Name"], c["Type"]) for c in cols] == [
        ("id", "string"), ("seen", "timestamp"), ("tags", "array<string>"),
        ("extra", "map<string,array<string>>"), ("price", "decimal(10,2)"), ("code", "bigint")]
    assert cols[0]["Comment"] == "it's the id"
    # Only the generated blocks change: everything outside the markers is preserved.
    outside = re.compile(r"# >>> BEGIN GENERATED.*?# <<< END GENERATED \w+\n", re.S)
    assert outside.sub("", template.read_text()) == outside.sub("", (INFRA / "central.yaml").read_text())


def test_saved_queries_zero_to_many(scratch):
    schemas, template = scratch
    assert run(schemas, template) == 0  # no schemas/queries folder at all
    t = render.load_template(template)
    assert not [k for k in t["Resources"] if k.startswith("SavedQuery")]
    (schemas / "queries").mkdir()
    assert run(schemas, template) == 0  # empty folder
    (schemas / "queries" / "who-deleted_secrets.sql").write_text(
        "-- Who deleted secrets?\n-- Filter on dt.\nSELECT 1 FROM eks_audit WHERE dt >= '2024-01-01';\n")
    (schemas / "queries" / "02_pods.sql").write_text("SELECT 2\n")
    assert run(schemas, template) == 0
    t = render.load_template(template)
    saved = {k: v["Properties"] for k, v in t["Resources"].items() if k.startswith("SavedQuery")}
    assert set(saved) == {"SavedQueryWhoDeletedSecrets", "SavedQuery02Pods"}
    q = saved["SavedQueryWhoDeletedSecrets"]
    assert q["Description"] == "Who deleted secrets? Filter on dt."
    assert q["Name"] == {"Fn::Sub": "${NamePrefix}-who-deleted_secrets"}
    assert q["QueryString"].startswith("-- Who deleted secrets?")
    assert q["WorkGroup"] == {"Ref": "AthenaWorkGroup"}
    (schemas / "queries" / "02_pods.sql").unlink()
    assert run(schemas, template, "--check") == 1
    assert run(schemas, template) == 0
    t = render.load_template(template)
    assert [k for k in t["Resources"] if k.startswith("SavedQuery")] == ["SavedQueryWhoDeletedSecrets"]


def test_view_statement_is_cleaned(scratch):
    schemas, template = scratch
    assert run(schemas, template) == 0
    q = render.load_template(template)["Resources"]["ViewQueryThingView"]["Properties"]
    assert q["QueryString"] == "CREATE OR REPLACE VIEW thing_view AS\nSELECT id, 'a;b' AS s -- not a statement end;\nFROM things"
    assert q["Description"].endswith("Things with tags.")


def test_missing_or_malformed_sql_is_an_error(tmp_path, capsys):
    template = tmp_path / "central.yaml"
    shutil.copy(INFRA / "central.yaml", template)
    assert run(tmp_path / "nothing", template) == 2
    assert "no Athena DDL" in capsys.readouterr().err
    bad = tmp_path / "bad"
    (bad / "athena").mkdir(parents=True)
    (bad / "athena" / "t.sql").write_text(SAMPLE_TABLE.replace("things (", "t (").replace("STORED AS PARQUET", "STORED AS ORC"))
    assert run(bad, template) == 2
    assert "only STORED AS PARQUET" in capsys.readouterr().err
    (bad / "athena" / "t.sql").write_text("CREATE EXTERNAL TABLE t (\n  `a` string COMMENT 'x' 'y'\n)")
    assert run(bad, template) == 2
    (bad / "athena" / "t.sql").write_text("DROP TABLE t;")
    assert run(bad, template) == 2


def test_parser_handles_quotes_and_nested_types():
    t = render.parse_create_table(SAMPLE_TABLE, "things.sql")
    assert t.name == "things" and t.stored_as == "PARQUET"
    assert [c.comment for c in t.columns][:3] == ["it's the id", "when", "a, b"]
    assert t.properties["storage.location.template"] == "s3://LAKE_BUCKET/LAKE_PREFIX/things/dt=${dt}/"
    frag = render.glue_table(t)["Properties"]["TableInput"]
    assert frag["Parameters"]["storage.location.template"]["Fn::Sub"][0] == (
        "s3://${LakeBucket}/${KeyPrefix}things/dt=${!dt}/")
