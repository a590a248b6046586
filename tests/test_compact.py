"""`auditlake compact` as users run it (issue 14): on local lakes and on S3 (moto), read
back with DuckDB and pyarrow; the compacted rows against the view over the uncompacted
lake; the playbook's answers before and after; a run killed midway and re-run."""
from __future__ import annotations

import io
import shutil
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest

import events as E
import lakesql
from support import run
from test_lake import ATTR, _org_batches, invoke
from test_playbook import PLAYBOOK, demo_params, fetch, sql_of

A = "111122223333"


def parquet_files(lake, table=None):
    root = lake / table if table else lake
    return sorted(p for p in root.rglob("*.parquet"))


def compact(auditlake, lake, *args, env=None, check=True):
    return run([auditlake, "compact", "--lake", lake, *args], env=env, check=check)


def test_compacted_rows_equal_the_view_over_the_uncompacted_lake_for_every_identity_class(auditlake, tmp_path):
    """Audit events first (all pending), the CloudTrail behind them later, the audit
    record delivered twice: compaction writes what the view computes, each event once."""
    audit, trail = _org_batches()
    lake = tmp_path / "lake"
    invoke(auditlake, E.firehose_event([E.gz(audit)]), lake, tmp_path)
    invoke(auditlake, E.firehose_event([E.gz(audit)]), lake, tmp_path)  # a second delivery, new record id
    invoke(auditlake, E.firehose_event([E.gz(trail)]), lake, tmp_path)
    cols = ", ".join(ATTR)
    con = lakesql.connect(lake)
    stored = lakesql.rows(con, "SELECT count(*) AS n, count(DISTINCT audit_id) AS d FROM eks_audit")[0]
    assert stored["n"] == 2 * stored["d"], stored
    assert {r["s"] for r in lakesql.rows(con, "SELECT DISTINCT attribution_status AS s FROM eks_audit")} == {"pending"}
    view = lakesql.rows(con, f"SELECT DISTINCT audit_id, {cols} FROM eks_audit_attributed ORDER BY audit_id")
    assert len(view) == stored["d"]
    # every row of the fixture but the unknown key resolves through the view
    assert sum(r["attribution_status"] == "pending" for r in view) == 1

    ingest_schema = pq.read_schema(parquet_files(lake, "eks_audit")[0]).remove_metadata()
    r = compact(auditlake, lake, "--dt", "2024-11-26")
    summary = r.stdout.decode()
    assert "compacted" in summary and f"{stored['d']} duplicate row(s) dropped" in summary, summary

    con = lakesql.connect(lake)
    written = lakesql.rows(con, f"SELECT audit_id, {cols} FROM eks_audit ORDER BY audit_id")
    assert written == view, "compaction wrote exactly what the view computes"
    # and the view over the compacted lake still says the same
    assert lakesql.rows(con, f"SELECT audit_id, {cols} FROM eks_audit_attributed ORDER BY audit_id") == view
    audit_files = parquet_files(lake, "eks_audit")
    assert len(audit_files) == len({p.parent for p in audit_files}), "one file per account and cluster"
    assert all(p.name.startswith("compacted-") for p in audit_files)

    # pyarrow reads the compacted files with the ingest schema, sorted by event time
    for p in audit_files:
        t = pq.read_table(p)
        assert t.schema.remove_metadata() == ingest_schema
        times = t.column("event_time").to_pylist()
        assert times == sorted(times)
        md = pq.read_metadata(p)
        assert p.name.startswith("compacted-" + md.metadata[b"auditlake.compacted"].decode() + "-")
        assert md.row_group(0).column(0).compression == "ZSTD"

    # a second run changes nothing, and says so
    again = compact(auditlake, lake, "--dt", "2024-11-26")
    assert "nothing changed" in again.stdout.decode(), again.stdout
    assert parquet_files(lake) == sorted(parquet_files(lake, "eks_audit") + parquet_files(lake, "sts_sessions"))
    assert parquet_files(lake, "eks_audit") == audit_files


def test_the_playbook_answers_the_same_after_compaction(auditlake, demo_lake, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(demo_lake, lake)
    day = next(p.name[3:] for p in (lake / "eks_audit").iterdir())

    def answers():
        con = lakesql.connect(lake)
        con.execute("SET TimeZone = 'UTC'")
        return {q: sorted(map(repr, fetch(con, sql_of(q), demo_params(q, day)))) for q in PLAYBOOK}

    before = answers()
    assert all(before[q] for q in PLAYBOOK if not q.startswith("02_")), "the demo answers every question"
    files_before = len(parquet_files(lake))
    r = compact(auditlake, lake, "--dt", day)
    progress = r.stderr.decode().splitlines()
    partitions = [line for line in progress if ": compacted, files " in line]
    assert len(partitions) == len({p.parent for p in parquet_files(lake)}), progress
    assert answers() == before
    files_after = parquet_files(lake)
    assert len(files_after) < files_before / 20, (files_before, len(files_after))
    # no row pending whose session the lake knows
    con = lakesql.connect(lake)
    left = lakesql.rows(con, """SELECT count(*) AS n FROM eks_audit e JOIN eks_audit_attributed v USING (audit_id)
                                WHERE e.attribution_status = 'pending' AND v.attribution_status <> 'pending'""")
    assert left == [{"n": 0}]
    dup = lakesql.rows(con, "SELECT count(*) - count(DISTINCT (log_group, log_stream, cwl_event_id)) AS n FROM eks_audit")
    assert dup == [{"n": 0}]


def test_a_killed_run_is_finished_by_the_next_one(auditlake, demo_lake, tmp_path):
    """SIGKILL at increasing moments of a run with many small outputs; each re-run ends
    with every row exactly once and no manifest left."""
    base = tmp_path / "base"
    shutil.copytree(demo_lake, base)
    day = next(p.name[3:] for p in (base / "eks_audit").iterdir())
    count = "SELECT count(*) AS n, count(DISTINCT (log_group, log_stream, cwl_event_id)) AS d FROM eks_audit"
    expected = lakesql.rows(lakesql.connect(base), count)[0]
    assert expected["n"] == expected["d"]
    caught_midway = 0
    for attempt in range(12):
        lake = tmp_path / f"lake-{attempt}"
        shutil.copytree(base, lake)
        p = subprocess.Popen([str(auditlake), "compact", "--lake", str(lake), "--dt", day, "--target-mb", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.05 + 0.1 * attempt)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if list((lake / "_compaction").rglob("*.json")) if (lake / "_compaction").exists() else []:
            caught_midway += 1
        r = compact(auditlake, lake, "--dt", day, "--take-over")
        got = lakesql.rows(lakesql.connect(lake), count)[0]
        assert got == expected, (attempt, r.stderr.decode()[-2000:])
        assert not list(lake.rglob("_compaction/**/*.json"))
        assert not [f for f in parquet_files(lake) if f.name.startswith("part-")]
        shutil.rmtree(lake)
        if caught_midway >= 2:
            break
    assert caught_midway >= 1, "no kill landed inside a partition's swap; the test did not test"


def test_a_run_meeting_another_runs_fresh_manifest_skips_that_partition(auditlake, demo_lake, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(demo_lake, lake)
    day = next(p.name[3:] for p in (lake / "eks_audit").iterdir())
    p = subprocess.Popen([str(auditlake), "compact", "--lake", str(lake), "--dt", day],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list(lake.glob("_compaction/**/*.json")):
        time.sleep(0.001)
    p.send_signal(signal.SIGKILL)
    p.wait()
    if not list(lake.glob("_compaction/**/*.json")):
        pytest.skip("the run finished before it could be stopped")
    r = compact(auditlake, lake, "--dt", day, check=False)
    err = r.stderr.decode()
    assert r.returncode == 1 and "another compaction run holds it" in err and "--take-over" in err, err
    compact(auditlake, lake, "--dt", day, "--take-over")
    assert not list(lake.glob("_compaction/**/*.json"))


def test_compaction_on_s3(auditlake, moto, tmp_path):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="audit-lake")
    uri = "s3://audit-lake/org"
    audit, trail = _org_batches()
    for payload in (audit, trail, audit):
        p = tmp_path / f"ev-{time.monotonic_ns()}.json"
        p.write_text(__import__("json").dumps(E.firehose_event([E.gz(payload)])))
        run([auditlake, "invoke", "--event", p, "--lake", uri], env=moto.env())

    def keys(prefix):
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="audit-lake", Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    before = [k for k in keys("org/eks_audit/") if f"/{A}/" in k]
    others = [k for k in keys("org/eks_audit/") if f"/{A}/" not in k]
    rows_before = sum(pq.read_table(io.BytesIO(s3.get_object(Bucket="audit-lake", Key=k)["Body"].read())).num_rows for k in before)
    r = run([auditlake, "compact", "--lake", uri, "--dt", "2024-11-26", "--table", "eks_audit", "--account", A], env=moto.env())
    assert "compacted" in r.stdout.decode()
    after = [k for k in keys("org/eks_audit/") if f"/{A}/" in k]
    assert len(after) < len(before) and all("/compacted-" in k for k in after), after
    assert [k for k in keys("org/eks_audit/") if f"/{A}/" not in k] == others, "--account: only that account"
    assert not keys("org/_compaction/")
    rows = []
    for k in after:
        rows += pq.read_table(io.BytesIO(s3.get_object(Bucket="audit-lake", Key=k)["Body"].read())).to_pylist()
    ids = [r["audit_id"] for r in rows]
    assert len(ids) == len(set(ids)) == rows_before // 2
    assert "resolved" in {r["attribution_status"] for r in rows}
    again = run([auditlake, "compact", "--lake", uri, "--dt", "2024-11-26", "--table", "eks_audit", "--account", A], env=moto.env())
    assert "nothing changed" in again.stdout.decode()
    assert [k for k in keys("org/eks_audit/") if f"/{A}/" in k] == after


@pytest.mark.parametrize("args, message", [
    ([], "give --dt DAY, or --from DAY and --to DAY"),
    (["--dt", "2024-02-30"], "is not a date"),
    (["--dt", "2024-11-26", "--table", "raw"], "expected one of eks_audit, sts_sessions"),
    (["--dt", "2024-11-26", "--account", "../etc"], "not a 12-digit account id"),
    (["--from", "2024-11-27", "--to", "2024-11-26"], "--to is before --from"),
    (["--dt", "2024-11-26", "--zstd-level", "40"], "--zstd-level must be in 1..=22"),
])
def test_bad_compact_options_exit_2_with_one_line(auditlake, tmp_path, args, message):
    r = compact(auditlake, tmp_path / "lake", *args, check=False)
    err = r.stderr.decode().strip()
    assert r.returncode == 2 and message in err and len(err.splitlines()) == 1, err


def test_bad_compaction_settings_fail_start_naming_the_variable(auditlake, tmp_path):
    r = compact(auditlake, tmp_path / "lake", "--dt", "2024-11-26", env={"AUDITLAKE_COMPACT_TARGET_MB": "lots"}, check=False)
    assert r.returncode == 2 and r.stderr.decode().startswith("auditlake: AUDITLAKE_COMPACT_TARGET_MB:"), r.stderr
