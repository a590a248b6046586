"""Run the lake's Athena SQL on DuckDB.

The tables are DuckDB views over the lake's Parquet files (hive partitioning gives the
`dt` column, as partition projection does in Athena), and the checked-in Athena DDL of
the `eks_audit_attributed`, `findings_attributed` and `eks_api_events_attributed` views
are run as written, after a thin dialect shim for the few constructs DuckDB spells
differently. The SQL files themselves stay Athena SQL.

The detection rules' retro-hunt SQL (`auditlake rules sql`) reads nested request and
response objects (for CloudTrail rules: `request_parameters` and `response_elements`)
with one Trino construct DuckDB lacks (an SQL/JSON lax path query); it is rewritten into
a call of `lax_values`, a Python function registered on the connection that implements
the lax semantics independently of the Rust evaluator.
"""
from __future__ import annotations

import json
import pathlib
import re

import duckdb

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLES = ("eks_audit", "sts_sessions", "findings", "eks_api_events")
VIEWS = ("eks_audit_attributed", "findings_attributed", "eks_api_events_attributed")
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
    (re.compile(r"\bregexp_split\(", re.I), "regexp_split_to_array("),
    # MySQL-style date_format specifiers: minutes are %i and seconds %s (strftime: %M, %S)
    (re.compile(r"\bdate_format\(([^,()]+), '([^']*)'\)", re.I),
     lambda m: f"strftime({m[1]}, '{m[2].replace('%i', '%M').replace('%s', '%S')}')"),
]


# `auditlake rules sql` renders every nested field test as exactly this (col is
# request_object or response_object; the path is `lax $."k1"."k2"...[*]`, as a SQL
# string literal, so a quote in a key is doubled). Rewritten BEFORE the SHIM, which
# also rewrites json_extract_scalar.
LAX_RE = re.compile(
    r"transform\(CAST\(json_parse\(json_query\((?P<col>[A-Za-z_][A-Za-z0-9_.]*), "
    r"(?P<path>'(?:[^']|'')*') WITH ARRAY WRAPPER\)\) AS array\(json\)\), "
    r"j -> json_extract_scalar\(j, '\$'\)\)"
)


def athena_to_duckdb(sql: str) -> str:
    sql = LAX_RE.sub(lambda m: f"lax_values({m['col']}, {m['path']})", sql)
    for pat, rep in SHIM:
        sql = pat.sub(rep, sql)
    return sql


# ---- SQL/JSON lax path queries, independently of the Rust side -------------------------

_KEY_RE = re.compile(r'\."((?:[^"\\]|\\.)*)"')


def parse_lax_path(path: str) -> list[str]:
    """`lax $."spec"."containers"[*]` -> ["spec", "containers"]. Only the form the rule
    SQL renders: member accessors with double-quoted (backslash-escaped) keys, ending in
    `[*]`; anything else is an error (so a new rendering is noticed, not misread)."""
    prefix = "lax $"
    if not path.startswith(prefix) or not path.endswith("[*]"):
        raise ValueError(f"unsupported JSON path {path!r}")
    body, keys, i = path[len(prefix):-3], [], 0
    while i < len(body):
        m = _KEY_RE.match(body, i)
        if not m:
            raise ValueError(f"unsupported JSON path {path!r} at {body[i:]!r}")
        keys.append(re.sub(r"\\(.)", r"\1", m[1]))
        i = m.end()
    return keys


class _Num(str):
    """A JSON number, kept as its text."""


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def _loads(doc: str):
    return json.loads(doc, parse_int=_Num, parse_float=_Num, parse_constant=_not_json)


def lax_values(doc: str | None, path: str | None) -> list[str] | None:
    """The scalars the lax path reaches in `doc`, as strings (Trino's
    json_extract_scalar of each element of `json_query(doc, path WITH ARRAY WRAPPER)`).

    A member accessor takes the member of an object and, in lax mode, of each object
    element of an array (one level: arrays are unwrapped once); a missing member or a
    scalar yields nothing. The final `[*]` takes an array's elements, or the value
    itself. Of the values reached, strings are returned as themselves, booleans as
    'true'/'false', numbers as their JSON text; null, objects and arrays are dropped.
    NULL or invalid JSON -> NULL."""
    if doc is None or path is None:
        return None
    try:
        value = _loads(doc)
    except ValueError:
        return None
    items = [value]
    for key in parse_lax_path(path):
        nxt = []
        for v in items:
            if isinstance(v, dict):
                if key in v:
                    nxt.append(v[key])
            elif isinstance(v, list):
                nxt += [e[key] for e in v if isinstance(e, dict) and key in e]
        items = nxt
    reached = []
    for v in items:
        if isinstance(v, list):
            reached += v
        else:
            reached.append(v)
    out = []
    for v in reached:
        if isinstance(v, bool):
            out.append("true" if v else "false")
        elif isinstance(v, str):  # strings and _Num
            out.append(str(v))
    return out


def register_functions(con: duckdb.DuckDBPyConnection) -> None:
    con.create_function("lax_values", lax_values, ["VARCHAR", "VARCHAR"], "VARCHAR[]", null_handling="special")


def materialize(con: duckdb.DuckDBPyConnection, view: str) -> None:
    """Compute a view once and keep its rows (many queries over a lake of many small
    files: each would otherwise read every file and run the view again)."""
    con.execute(f"CREATE TEMP TABLE materialized_{view} AS SELECT * FROM {view}")
    con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM materialized_{view}")


def parquet_glob(lake: pathlib.Path, table: str) -> str:
    return str(lake / table / "**" / "*.parquet")


def connect(lake: pathlib.Path | str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the lake's tables (eks_audit, sts_sessions, findings,
    eks_api_events; a table without files is an empty view with the DDL's columns), the
    attributed views (eks_audit_attributed, findings_attributed, eks_api_events_attributed)
    and the lax_values function of the rules' SQL."""
    lake = pathlib.Path(lake)
    con = duckdb.connect()
    register_functions(con)
    for table in TABLES:
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
    for view in VIEWS:
        con.execute(athena_to_duckdb((ATHENA / f"{view}.sql").read_text()))
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
        "boolean": "BOOLEAN",
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
    saved playbook query, a rule's `auditlake rules sql`, or any SQL over eks_audit,
    sts_sessions, findings, eks_api_events and their attributed views)
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
