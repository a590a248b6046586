"""Run the lake's Athena SQL on DuckDB.

The tables are DuckDB views over the lake's Parquet files (hive partitioning gives the
`dt` column, as partition projection does in Athena), and the checked-in Athena DDL of
the `eks_audit_attributed` view is run as written, after a thin dialect shim for the
few constructs DuckDB spells differently. The SQL files themselves stay Athena SQL.
"""
from __future__ import annotations

import pathlib
import re

import duckdb

ROOT = pathlib.Path(__file__).resolve().parent.parent
ATHENA = ROOT / "schemas" / "athena"
QUERIES = ROOT / "schemas" / "queries"

# (Athena/Trino pattern, DuckDB replacement)
SHIM = [
    (re.compile(r"CAST\(ARRAY\[\] AS array\(varchar\)\)", re.I), "CAST([] AS VARCHAR[])"),
    (re.compile(r"\bfrom_iso8601_timestamp\(", re.I), "CAST("),
    (re.compile(r"\bjson_extract_scalar\(", re.I), "json_extract_string("),
    (re.compile(r"\bCARDINALITY\(", re.I), "len("),
    (re.compile(r"\bcontains\(", re.I), "list_contains("),
    (re.compile(r"\bdate_diff\('second',", re.I), "date_diff('second',"),
    (re.compile(r"\bapprox_distinct\(", re.I), "approx_count_distinct("),
    # used by the forensic playbook (schemas/queries/*.sql)
    (re.compile(r"\bjson_format\(", re.I), "json("),
    (re.compile(r"\bregexp_like\(", re.I), "regexp_matches("),
    (re.compile(r"\barray_join\(", re.I), "array_to_string("),
    # Trino's element_at(map, key) is the value (NULL when absent); DuckDB's is a list
    (re.compile(r"\belement_at\(", re.I), "map_extract_value("),
]


def athena_to_duckdb(sql: str) -> str:
    for pat, rep in SHIM:
        sql = pat.sub(rep, sql)
    return sql


def parquet_glob(lake: pathlib.Path, table: str) -> str:
    return str(lake / table / "**" / "*.parquet")


def connect(lake: pathlib.Path | str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with eks_audit, sts_sessions and eks_audit_attributed."""
    lake = pathlib.Path(lake)
    con = duckdb.connect()
    for table in ("eks_audit", "sts_sessions"):
        files = list((lake / table).rglob("*.parquet"))
        if files:
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{parquet_glob(lake, table)}', "
                "hive_partitioning = true, hive_types = {'dt': VARCHAR}, union_by_name = true)"
            )
        else:
            # an empty table with the same columns, from the DDL's column list
            cols = ddl_columns(table)
            body = ", ".join(f'CAST(NULL AS {duck_type(t)}) AS "{n}"' for n, t in cols)
            con.execute(f"CREATE VIEW {table} AS SELECT {body}, CAST(NULL AS VARCHAR) AS dt WHERE false")
    view = (ATHENA / "eks_audit_attributed.sql").read_text()
    con.execute(athena_to_duckdb(view))
    return con


COL_RE = re.compile(r"^\s+`(?P<name>[a-z0-9_]+)`\s+(?P<type>\S+)\s+COMMENT", re.M)


def ddl_columns(table: str) -> list[tuple[str, str]]:
    """(name, hive type) of a table, from its checked-in DDL."""
    text = (ATHENA / f"{table}.sql").read_text()
    return [(m["name"], m["type"]) for m in COL_RE.finditer(text)]


def duck_type(hive: str) -> str:
    return {
        "string": "VARCHAR",
        "int": "INTEGER",
        "timestamp": "TIMESTAMP WITH TIME ZONE",
        "array<string>": "VARCHAR[]",
        "map<string,string>": "MAP(VARCHAR, VARCHAR)",
        "map<string,array<string>>": "MAP(VARCHAR, VARCHAR[])",
    }[hive]


def rows(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> list[dict]:
    cur = con.execute(athena_to_duckdb(sql), params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def main(argv: list[str]) -> int:
    """`python3 tests/lakesql.py LAKE (FILE.sql | --sql SQL) [PARAM...]`: run Athena SQL (a
    saved playbook query, or any SQL over eks_audit, sts_sessions, eks_audit_attributed)
    on a local lake with DuckDB and print the rows. PARAMs bind the `?` in order."""
    if len(argv) < 2:
        print(main.__doc__)
        return 2
    con = connect(argv[0])
    con.execute("SET TimeZone = 'UTC'")
    if argv[1] == "--sql":
        sql, params = argv[2], argv[3:]
    else:
        sql, params = pathlib.Path(argv[1]).read_text(), argv[2:]
    con.sql(athena_to_duckdb(sql), params=params).show(max_width=200)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
