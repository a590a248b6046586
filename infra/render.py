#!/usr/bin/env python3
"""Render the generated parts of infra/central.yaml from the checked-in Athena SQL.

One source of truth for the table layout: the Rust crate `schemas` renders the Athena
DDL into schemas/athena/*.sql (a Rust test keeps those files equal to the code). This
script parses those files and writes, between the GENERATED markers of central.yaml:

  * one AWS::Glue::Table per `CREATE EXTERNAL TABLE` (columns, partition keys and every
    TBLPROPERTIES entry, with the s3://LAKE_BUCKET/LAKE_PREFIX placeholder replaced by
    the stack's lake bucket and prefix through Fn::Sub),
  * one AWS::Athena::NamedQuery per `CREATE OR REPLACE VIEW` (the view is created by
    running that saved statement once; see docs/deploy.md for why it is not a Glue
    VIRTUAL_VIEW),
  * one AWS::Athena::NamedQuery per schemas/queries/*.sql (0..n files; the folder may
    be missing),
  * the matching stack Outputs.

Usage (from anywhere):
  python3 infra/render.py            rewrite the generated blocks in place
  python3 infra/render.py --check    exit 1 and print a diff when the template is stale

Only the standard library and PyYAML are used.
"""

from __future__ import annotations

import argparse
import difflib
import pathlib
import re
import sys
from dataclasses import dataclass, field

import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_SCHEMAS = REPO / "schemas"
DEFAULT_TEMPLATE = REPO / "infra" / "central.yaml"

# The lake-root placeholder the Rust crate writes into the checked-in DDL
# (schemas/src/ddl.rs LAKE_PLACEHOLDER), followed by a slash.
LAKE_PLACEHOLDER = "s3://LAKE_BUCKET/LAKE_PREFIX/"
# Its CloudFormation replacement inside Fn::Sub. KeyPrefix is '' or '<LakePrefix>/'.
LAKE_SUB = "s3://${LakeBucket}/${KeyPrefix}"
KEY_PREFIX_VAR = {"KeyPrefix": {"Fn::If": ["HasLakePrefix", {"Fn::Sub": "${LakePrefix}/"}, ""]}}

# Glue limits (AWS::Glue::Table Column.Comment: max 255 characters).
GLUE_COMMENT_MAX = 255
# AWS::Athena::NamedQuery limits.
NAMED_QUERY_NAME_MAX = 128
NAMED_QUERY_DESCRIPTION_MAX = 1024
NAMED_QUERY_STRING_MAX = 262144

PARQUET_STORAGE = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}

MARK_BEGIN = "# >>> BEGIN GENERATED {name} (infra/render.py; edit schemas/, then rerun it)"
MARK_END = "# <<< END GENERATED {name}"


class RenderError(Exception):
    """The SQL files are not of the shape this generator understands."""


# --------------------------------------------------------------------------- SQL parsing


@dataclass
class Column:
    name: str
    type: str
    comment: str = ""


@dataclass
class Table:
    name: str
    columns: list[Column]
    partition_keys: list[Column]
    stored_as: str
    location: str
    properties: dict[str, str]
    source: str = ""


@dataclass
class View:
    name: str
    statement: str  # the CREATE OR REPLACE VIEW statement, comments and ';' removed
    description: str
    source: str = ""


@dataclass
class SavedQuery:
    name: str
    query: str
    description: str
    source: str = ""


@dataclass
class Schemas:
    tables: list[Table] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    queries: list[SavedQuery] = field(default_factory=list)


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*)
  | (?P<bq>`(?:[^`]|``)*`)
  | (?P<str>'(?:[^']|'')*')
  | (?P<punct>[(),=<>;:])
  | (?P<word>[A-Za-z0-9_.$]+)
    """,
    re.VERBOSE,
)


def tokenize(sql: str) -> list[tuple[str, str]]:
    """Hive DDL tokens as (kind, value); comments and whitespace dropped.

    Kinds: 'ident' (backquoted, unquoted value), 'str' (single-quoted, unescaped value),
    'punct', 'word'.
    """
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        if not m:
            line = sql.count("\n", 0, pos) + 1
            raise RenderError(f"line {line}: unexpected character {sql[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        text = m.group()
        if kind in ("ws", "comment"):
            continue
        if kind == "bq":
            out.append(("ident", text[1:-1].replace("``", "`")))
        elif kind == "str":
            out.append(("str", text[1:-1].replace("''", "'")))
        else:
            out.append((kind, text))
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], source: str):
        self.t = tokens
        self.i = 0
        self.source = source

    def err(self, msg: str) -> RenderError:
        near = " ".join(v for _, v in self.t[self.i : self.i + 6])
        return RenderError(f"{self.source}: {msg} (near: {near!r})")

    def peek(self, k: int = 0) -> tuple[str, str] | None:
        j = self.i + k
        return self.t[j] if j < len(self.t) else None

    def next(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self.err("unexpected end of file")
        self.i += 1
        return tok

    def at_word(self, *words: str) -> bool:
        for k, w in enumerate(words):
            tok = self.peek(k)
            if tok is None or tok[0] != "word" or tok[1].upper() != w:
                return False
        return True

    def expect_word(self, *words: str) -> None:
        if not self.at_word(*words):
            raise self.err("expected " + " ".join(words))
        self.i += len(words)

    def expect_punct(self, p: str) -> None:
        tok = self.next()
        if tok != ("punct", p):
            self.i -= 1
            raise self.err(f"expected {p!r}")

    def name(self) -> str:
        kind, value = self.next()
        if kind not in ("ident", "word"):
            self.i -= 1
            raise self.err("expected a name")
        return value

    def string(self) -> str:
        kind, value = self.next()
        if kind != "str":
            self.i -= 1
            raise self.err("expected a quoted string")
        return value

    def hive_type(self) -> str:
        """A Hive type up to the next top-level ',' / ')' / COMMENT, e.g. map<string,array<string>>."""
        parts: list[str] = []
        depth = 0
        while True:
            tok = self.peek()
            if tok is None:
                raise self.err("unterminated type")
            kind, value = tok
            if depth == 0 and (
                tok in (("punct", ","), ("punct", ")"))
                or (kind == "word" and value.upper() == "COMMENT")
            ):
                break
            if value in ("<", "("):
                depth += 1
            elif value in (">", ")"):
                depth -= 1
            if kind not in ("word", "punct"):
                raise self.err("unexpected token in a type")
            if parts and kind == "word" and parts[-1][-1:].isalnum():
                parts.append(" ")
            parts.append(value.lower() if kind == "word" else value)
            self.i += 1
        if not parts:
            raise self.err("missing column type")
        return "".join(parts)

    def column_list(self) -> list[Column]:
        self.expect_punct("(")
        cols: list[Column] = []
        while True:
            name = self.name()
            ty = self.hive_type()
            comment = ""
            if self.at_word("COMMENT"):
                self.i += 1
                comment = self.string()
            cols.append(Column(name, ty, comment))
            tok = self.next()
            if tok == ("punct", ")"):
                return cols
            if tok != ("punct", ","):
                self.i -= 1
                raise self.err("expected ',' or ')' after a column")

    def properties(self) -> dict[str, str]:
        self.expect_punct("(")
        props: dict[str, str] = {}
        while True:
            key = self.string()
            self.expect_punct("=")
            value = self.string()
            if key in props:
                raise self.err(f"duplicate table property {key!r}")
            props[key] = value
            tok = self.next()
            if tok == ("punct", ")"):
                return props
            if tok != ("punct", ","):
                self.i -= 1
                raise self.err("expected ',' or ')' in TBLPROPERTIES")


def parse_create_table(sql: str, source: str = "<sql>") -> Table:
    """Parse one `CREATE EXTERNAL TABLE` statement of the shape `auditlake ddl` writes."""
    p = _Parser(tokenize(sql), source)
    p.expect_word("CREATE", "EXTERNAL", "TABLE")
    if p.at_word("IF", "NOT", "EXISTS"):
        p.i += 3
    name = p.name()
    columns = p.column_list()
    partition_keys: list[Column] = []
    stored_as = ""
    location = ""
    properties: dict[str, str] = {}
    while p.peek() is not None and p.peek() != ("punct", ";"):
        if p.at_word("PARTITIONED", "BY"):
            p.i += 2
            partition_keys = p.column_list()
        elif p.at_word("STORED", "AS"):
            p.i += 2
            stored_as = p.name().upper()
        elif p.at_word("LOCATION"):
            p.i += 1
            location = p.string()
        elif p.at_word("TBLPROPERTIES"):
            p.i += 1
            properties = p.properties()
        else:
            raise p.err("unsupported clause")
    if p.peek() == ("punct", ";"):
        p.i += 1
    if p.peek() is not None:
        raise p.err("more than one statement")
    if stored_as != "PARQUET":
        raise RenderError(f"{source}: only STORED AS PARQUET is supported, got {stored_as or 'nothing'!r}")
    if not location.startswith(LAKE_PLACEHOLDER):
        raise RenderError(f"{source}: LOCATION must start with {LAKE_PLACEHOLDER!r}, got {location!r}")
    names = [c.name for c in columns + partition_keys]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RenderError(f"{source}: duplicate column names {dupes}")
    return Table(name, columns, partition_keys, stored_as, location, properties, source)


def _leading_comments(sql: str) -> tuple[list[str], str]:
    """Split leading `--` comment lines (and blank lines) from the statement."""
    lines = sql.splitlines()
    comments: list[str] = []
    i = 0
    while i < len(lines) and (lines[i].strip().startswith("--") or not lines[i].strip()):
        text = lines[i].strip()[2:].strip() if lines[i].strip() else ""
        if text:
            comments.append(text)
        i += 1
    return comments, "\n".join(lines[i:])


_VIEW_HEAD = re.compile(r"^CREATE\s+OR\s+REPLACE\s+VIEW\s+[`\"]?([A-Za-z0-9_]+)[`\"]?\s+AS\b", re.I)


def parse_view(sql: str, source: str = "<sql>") -> View:
    comments, body = _leading_comments(sql)
    m = _VIEW_HEAD.match(body)
    if not m:
        raise RenderError(f"{source}: expected CREATE OR REPLACE VIEW <name> AS ...")
    statement = body.rstrip()
    if statement.endswith(";"):
        statement = statement[:-1].rstrip()
    if ";" in _strip_sql_strings(statement):
        raise RenderError(f"{source}: more than one statement")
    description = " ".join(c for c in comments if not c.startswith("Generated by"))
    return View(m.group(1), statement, description, source)


def _strip_sql_strings(sql: str) -> str:
    sql = re.sub(r"'(?:[^']|'')*'", "''", sql)
    return re.sub(r"--[^\n]*", "", sql)


def _first_paragraph(sql: str) -> str:
    """The leading comment lines up to the first empty `--` line, joined."""
    words: list[str] = []
    for line in sql.splitlines():
        line = line.strip()
        if not line.startswith("--"):
            break
        text = line[2:].strip()
        if not text:
            if words:
                break
            continue
        words.append(text)
    return " ".join(words)


def parse_saved_query(sql: str, path: pathlib.Path) -> SavedQuery:
    _, body = _leading_comments(sql)
    if not body.strip():
        raise RenderError(f"{path}: empty query")
    return SavedQuery(path.stem, sql.strip() + "\n", _first_paragraph(sql), str(path))


def load_schemas(schemas_dir: pathlib.Path) -> Schemas:
    athena = schemas_dir / "athena"
    files = sorted(athena.glob("*.sql")) if athena.is_dir() else []
    if not files:
        raise RenderError(
            f"no Athena DDL under {athena}: the Rust crate writes it "
            "(UPDATE_DDL=1 cargo test -p schemas)"
        )
    out = Schemas()
    for path in files:
        text = path.read_text(encoding="utf-8")
        rel = f"schemas/athena/{path.name}"  # the same wherever the folder is
        _, body = _leading_comments(text)
        if re.match(r"^CREATE\s+EXTERNAL\s+TABLE\b", body, re.I):
            table = parse_create_table(text, rel)
            if table.name != path.stem:
                raise RenderError(f"{rel}: table {table.name!r} does not match the file name")
            out.tables.append(table)
        elif _VIEW_HEAD.match(body):
            view = parse_view(text, rel)
            if view.name != path.stem:
                raise RenderError(f"{rel}: view {view.name!r} does not match the file name")
            out.views.append(view)
        else:
            raise RenderError(f"{rel}: neither CREATE EXTERNAL TABLE nor CREATE OR REPLACE VIEW")
    queries = schemas_dir / "queries"
    for path in sorted(queries.glob("*.sql")) if queries.is_dir() else []:
        out.queries.append(parse_saved_query(path.read_text(encoding="utf-8"), path))
        out.queries[-1].source = f"schemas/queries/{path.name}"
    return out


def _rel(path: pathlib.Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


# --------------------------------------------------------------- CloudFormation fragments


def logical_id(prefix: str, name: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", name)
    return prefix + "".join(w[:1].upper() + w[1:] for w in words if w)


def _lake_value(value: str):
    """A DDL string that may contain the lake placeholder -> a plain string or Fn::Sub."""
    if LAKE_PLACEHOLDER.rstrip("/") not in value:
        return value
    escaped = value.replace("${", "${!")  # literal ${dt} must be ${!dt} inside Fn::Sub
    if not escaped.startswith(LAKE_PLACEHOLDER) or LAKE_PLACEHOLDER in escaped[len(LAKE_PLACEHOLDER):]:
        raise RenderError(f"lake placeholder in an unexpected position: {value!r}")
    return {"Fn::Sub": [LAKE_SUB + escaped[len(LAKE_PLACEHOLDER):], dict(KEY_PREFIX_VAR)]}


class Flow(dict):
    """A mapping emitted on one line (used for column entries)."""


def glue_column(c: Column) -> Flow:
    col = Flow(Name=c.name, Type=c.type)
    if c.comment:
        comment = " ".join(c.comment.split())
        if len(comment) > GLUE_COMMENT_MAX:
            comment = comment[: GLUE_COMMENT_MAX - 3] + "..."
        col["Comment"] = comment
    return col


def glue_table(t: Table) -> dict:
    params: dict = {"EXTERNAL": "TRUE", "classification": "parquet"}
    for k, v in t.properties.items():
        params[k] = _lake_value(v)
    return {
        "Type": "AWS::Glue::Table",
        "Properties": {
            "CatalogId": {"Ref": "AWS::AccountId"},
            "DatabaseName": {"Ref": "GlueDatabase"},
            "TableInput": {
                "Name": t.name,
                "Description": f"Rendered from {t.source}",
                "TableType": "EXTERNAL_TABLE",
                "Parameters": params,
                "PartitionKeys": [glue_column(c) for c in t.partition_keys],
                "StorageDescriptor": {
                    "Columns": [glue_column(c) for c in t.columns],
                    "Location": _lake_value(t.location),
                    **PARQUET_STORAGE,
                },
            },
        },
    }


def named_query(name: str, description: str, query: str) -> dict:
    if len(query) > NAMED_QUERY_STRING_MAX:
        raise RenderError(f"{name}: query longer than {NAMED_QUERY_STRING_MAX} characters")
    props = {
        "Name": {"Fn::Sub": "${NamePrefix}-" + name.replace("${", "${!")},
        "Database": {"Ref": "GlueDatabase"},
        "WorkGroup": {"Ref": "AthenaWorkGroup"},
    }
    if description:
        props["Description"] = description[:NAMED_QUERY_DESCRIPTION_MAX]
    props["QueryString"] = query
    return {"Type": "AWS::Athena::NamedQuery", "Properties": props}


def build_fragments(schemas: Schemas) -> tuple[dict, dict]:
    resources: dict = {}
    outputs: dict = {}

    def add(lid: str, body: dict, source: str) -> None:
        if lid in resources:
            raise RenderError(f"{source}: logical id {lid} is already used")
        resources[lid] = body

    for t in schemas.tables:
        lid = logical_id("GlueTable", t.name)
        add(lid, glue_table(t), t.source)
        outputs[lid + "Name"] = {
            "Description": f"Glue table rendered from {t.source}",
            "Value": {"Ref": lid},
        }
    for v in schemas.views:
        lid = logical_id("ViewQuery", v.name)
        desc = f"Creates the {v.name} view; run it once after each deploy (docs/deploy.md). " + v.description
        add(lid, named_query(f"create-view-{v.name}", desc.strip(), v.statement), v.source)
        outputs[lid + "Id"] = {
            "Description": f"Named query that creates the {v.name} view: aws athena get-named-query --named-query-id <this>",
            "Value": {"Ref": lid},
        }
    for q in schemas.queries:
        lid = logical_id("SavedQuery", q.name)
        add(lid, named_query(q.name, q.description, q.query), q.source)
    for name in list(resources):
        if len(name) > 255:
            raise RenderError(f"logical id too long: {name}")
    return resources, outputs


# ----------------------------------------------------------------------- YAML emission


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # never emit &anchors / *aliases
        return True


def _repr_str(dumper: yaml.SafeDumper, data: str):
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


def _repr_flow(dumper: yaml.SafeDumper, data: Flow):
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=True)


_Dumper.add_representer(str, _repr_str)
_Dumper.add_representer(Flow, _repr_flow)


def to_yaml(obj: dict, indent: int) -> str:
    text = yaml.dump(
        obj,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=4096,
        allow_unicode=True,
        indent=2,
    )
    pad = " " * indent
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))


def render_block(name: str, body: dict, indent: int) -> str:
    pad = " " * indent
    inner = to_yaml(body, indent) if body else pad + "# (nothing to generate)\n"
    return pad + MARK_BEGIN.format(name=name) + "\n" + inner + pad + MARK_END.format(name=name) + "\n"


def replace_block(template: str, name: str, body: dict) -> str:
    begin = re.compile(r"^( *)" + re.escape(MARK_BEGIN.format(name=name).split(" (")[0]) + r".*\n", re.M)
    m = begin.search(template)
    if not m:
        raise RenderError(f"marker for the generated {name!r} block not found in the template")
    indent = len(m.group(1))
    end = re.compile(r"^ *" + re.escape(MARK_END.format(name=name)) + r"\n", re.M)
    e = end.search(template, m.end())
    if not e:
        raise RenderError(f"end marker for the generated {name!r} block not found")
    return template[: m.start()] + render_block(name, body, indent) + template[e.end():]


def render(template: str, schemas: Schemas) -> str:
    resources, outputs = build_fragments(schemas)
    out = replace_block(template, "resources", resources)
    out = replace_block(out, "outputs", outputs)
    return out


# ------------------------------------------------------- CloudFormation YAML loading


class CfnLoader(yaml.SafeLoader):
    """Loads CloudFormation YAML, turning short-form tags into their long form."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    fn = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if fn == "Fn::GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {fn: value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path_or_text) -> dict:
    text = path_or_text.read_text(encoding="utf-8") if isinstance(path_or_text, pathlib.Path) else path_or_text
    return yaml.load(text, Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass


# ---------------------------------------------------------------------------- command


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if the template is stale")
    ap.add_argument("--schemas", type=pathlib.Path, default=DEFAULT_SCHEMAS, help="schemas/ folder")
    ap.add_argument("--template", type=pathlib.Path, default=DEFAULT_TEMPLATE, help="central template")
    args = ap.parse_args(argv)
    try:
        current = args.template.read_text(encoding="utf-8")
        rendered = render(current, load_schemas(args.schemas))
        load_template(rendered)  # the result must still be valid YAML
    except (RenderError, OSError, yaml.YAMLError) as e:
        print(f"render.py: {e}", file=sys.stderr)
        return 2
    if rendered == current:
        print(f"{_rel(args.template)} is up to date")
        return 0
    if args.check:
        diff = difflib.unified_diff(
            current.splitlines(True), rendered.splitlines(True),
            f"{_rel(args.template)} (checked in)", f"{_rel(args.template)} (rendered)", n=2,
        )
        sys.stdout.writelines(list(diff)[:200])
        print(f"\n{_rel(args.template)} is stale: run python3 infra/render.py", file=sys.stderr)
        return 1
    args.template.write_text(rendered, encoding="utf-8")
    print(f"wrote {_rel(args.template)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
