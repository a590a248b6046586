"""Bytes DuckDB reads, and how long it takes, for each playbook query over a local lake
(bench/compact.sh runs it before and after compaction). Bytes are the process's read
syscalls (/proc/self/io `rchar`) during the query: what DuckDB fetched from the files.

    python bench/playbook_reads.py LAKE DAY
"""
from __future__ import annotations

import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import lakesql  # noqa: E402

PARAMS = {
    "principal_arn": "arn:aws:iam::222222222222:user/alice",
    "principal_name": "alice",
}


def rchar() -> int:
    for line in pathlib.Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def params(sql: str, day: str) -> list:
    import re
    out = []
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        m = re.match(r"^--\s+(\d+)\s+([a-z_]+)\s", line + " ")
        if m:
            out.append(m[2])
    given = dict(PARAMS, dt_from=day, dt_to=day, window_start=f"{day} 00:00:00", window_end=f"{day} 23:59:59")
    return [given[p] for p in out]


def main(lake: str, day: str) -> None:
    result = {}
    for q in sorted(lakesql.QUERIES.glob("0*.sql")):
        sql = q.read_text()
        con = lakesql.connect(pathlib.Path(lake))
        con.execute("SET TimeZone = 'UTC'")
        before = rchar()
        t = time.perf_counter()
        rows = con.sql(lakesql.athena_to_duckdb(sql), params=params(sql, day)).fetchall()
        secs = time.perf_counter() - t
        distinct = sorted(set(map(repr, rows)))
        result[q.name] = {"bytes_read": rchar() - before, "seconds": round(secs, 3), "rows": len(rows),
                          "distinct_rows": len(distinct), "answer": hash("\n".join(distinct))}
        con.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
