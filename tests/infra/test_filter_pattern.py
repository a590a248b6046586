"""The CloudTrail feed's subscription filter pattern, evaluated against CloudTrail records.

`infra/cloudtrail-feed.yaml` sends the organisation trail's log group through one
CloudWatch Logs subscription filter. Which records reach the lake is decided only by its
JSON filter pattern, so these tests run that pattern (read from the template) over
fixture records: every EKS access/visibility call in tests/fixtures/cloudtrail_eks/ and
failed/ and variants/ must pass, as must the four credential-issuing STS calls; nothing in
negative/ may pass.

The evaluator implements the subset of the CloudWatch Logs JSON filter-pattern syntax the
template uses, as documented in "Filter pattern syntax" (awsdocs
amazon-cloudwatch-logs-user-guide, doc_source/FilterAndPatternSyntax.md, and
https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html):

    pattern    := "{" or_expr "}"
    or_expr    := and_expr ("||" and_expr)*
    and_expr   := primary ("&&" primary)*          # "() > && > ||"
    primary    := "(" or_expr ")" | comparison
    comparison := SELECTOR ("=" | "!=") VALUE
    SELECTOR   := "$" ("." name | "[" digits "]")+
    VALUE      := "quoted string" | bare token (letters, digits, _ - . * : /)

A `*` at the start and/or end of a string value matches any text ("*Event", "Event*");
elsewhere it is literal ("Ev*ent" only matches "Ev*ent"). The selector must name a value
node (string or number): on an object, an array, a boolean, null or a missing key both `=`
and `!=` are false. Numeric comparisons, IS NULL / NOT EXISTS / IS TRUE and regex (%...%) are not
used by the template and are rejected as syntax errors, so a pattern that needs them cannot
be tested here by accident.
"""

from __future__ import annotations

import json
import pathlib
import re
from dataclasses import dataclass
from typing import Any, Union

import pytest

from infra_support import REPO, load

FIXTURES = REPO / "tests" / "fixtures" / "cloudtrail_eks"
PATTERN = load("cloudtrail-feed.yaml")["Parameters"]["FilterPattern"]["Default"]
STS_EVENTS = ["AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity", "GetFederationToken"]


# ------------------------------------------------------------------------------ tokenizer


class PatternSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Tok:
    kind: str  # { } ( ) && || = != SEL STR
    text: str
    pos: int


_SELECTOR = re.compile(r"\$(?:\.[A-Za-z0-9_-]+|\[\d+\])+")
_BARE = re.compile(r"[A-Za-z0-9_.*:/-]+")


def tokenize(src: str) -> list[Tok]:
    toks: list[Tok] = []
    i = 0
    while i < len(src):
        c = src[i]
        if c.isspace():
            i += 1
        elif c in "{}()":
            toks.append(Tok(c, c, i))
            i += 1
        elif src.startswith("&&", i) or src.startswith("||", i) or src.startswith("!=", i):
            toks.append(Tok(src[i:i + 2], src[i:i + 2], i))
            i += 2
        elif c == "=":
            toks.append(Tok("=", "=", i))
            i += 1
        elif c == "$":
            m = _SELECTOR.match(src, i)
            if not m:
                raise PatternSyntaxError(f"bad selector at {i}: {src[i:i + 20]!r}")
            toks.append(Tok("SEL", m.group(0), i))
            i = m.end()
        elif c == '"':
            j, out = i + 1, []
            while True:
                if j >= len(src):
                    raise PatternSyntaxError(f"unterminated string at {i}")
                if src[j] == "\\" and j + 1 < len(src):
                    out.append(src[j + 1])
                    j += 2
                elif src[j] == '"':
                    break
                else:
                    out.append(src[j])
                    j += 1
            toks.append(Tok("STR", "".join(out), i))
            i = j + 1
        else:
            m = _BARE.match(src, i)
            if not m:
                raise PatternSyntaxError(f"unexpected character {c!r} at {i}")
            word = m.group(0)
            if word in ("IS", "NOT", "NULL", "EXISTS", "TRUE", "FALSE"):
                raise PatternSyntaxError(f"{word!r} at {i}: not supported by this evaluator")
            toks.append(Tok("STR", word, i))
            i = m.end()
    return toks


# --------------------------------------------------------------------------------- parser


@dataclass(frozen=True)
class Cmp:
    path: tuple[Union[str, int], ...]
    op: str  # "=" or "!="
    value: str


@dataclass(frozen=True)
class And:
    parts: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    parts: tuple["Node", ...]


Node = Union[Cmp, And, Or]


class _Parser:
    def __init__(self, src: str, strict: bool):
        self.toks = tokenize(src)
        self.i = 0
        self.strict = strict

    def peek(self) -> str | None:
        return self.toks[self.i].kind if self.i < len(self.toks) else None

    def take(self, kind: str) -> Tok:
        if self.peek() != kind:
            got = self.toks[self.i] if self.i < len(self.toks) else None
            raise PatternSyntaxError(f"expected {kind!r}, got {got}")
        self.i += 1
        return self.toks[self.i - 1]

    def pattern(self) -> Node:
        self.take("{")
        node = self.or_expr()
        self.take("}")
        if self.peek() is not None:
            raise PatternSyntaxError(f"trailing input: {self.toks[self.i]}")
        return node

    def or_expr(self) -> Node:
        node, chained = self.and_expr()
        parts, any_chain = [node], chained
        while self.peek() == "||":
            self.i += 1
            node, chained = self.and_expr()
            parts.append(node)
            any_chain = any_chain or chained
        if self.strict and len(parts) > 1 and any_chain:
            raise PatternSyntaxError("&& and || mixed at one level without parentheses")
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self) -> tuple[Node, bool]:
        """The node, and whether it is a bare && chain (not one parenthesised primary)."""
        parts = [self.primary()]
        while self.peek() == "&&":
            self.i += 1
            parts.append(self.primary())
        return (parts[0], False) if len(parts) == 1 else (And(tuple(parts)), True)

    def primary(self) -> Node:
        if self.peek() == "(":
            self.i += 1
            node = self.or_expr()
            self.take(")")
            return node
        sel = self.take("SEL").text
        if self.peek() not in ("=", "!="):
            raise PatternSyntaxError(f"expected = or != after {sel}")
        op = self.toks[self.i].kind
        self.i += 1
        value = self.take("STR").text
        return Cmp(_path(sel), op, value)


def _path(selector: str) -> tuple[Union[str, int], ...]:
    return tuple(int(idx) if idx else name
                 for name, idx in re.findall(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]", selector))


def parse(src: str, strict: bool = False) -> Node:
    """Parse a JSON filter pattern. strict=True also rejects && and || mixed at one level
    without parentheses (the template keeps every level explicit)."""
    return _Parser(src, strict).pattern()


# ------------------------------------------------------------------------------ evaluator

_MISSING = object()


def _resolve(doc: Any, path: tuple[Union[str, int], ...]) -> Any:
    node = doc
    for step in path:
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                return _MISSING
        elif not isinstance(node, dict) or step not in node:
            return _MISSING
        node = node[step]
    return node


def _string_matches(actual: str, wanted: str) -> bool:
    lead, trail = wanted.startswith("*"), wanted.endswith("*") and len(wanted) > 1
    core = wanted[1 if lead else 0:len(wanted) - (1 if trail else 0)]
    if lead and trail:
        return core in actual
    if lead:
        return actual.endswith(core)
    if trail:
        return actual.startswith(core)
    return actual == wanted


def _value_equals(actual: Any, wanted: str) -> bool:
    if isinstance(actual, (int, float)) and not isinstance(actual, bool):
        try:
            return float(wanted) == float(actual)
        except ValueError:
            return False
    return isinstance(actual, str) and _string_matches(actual, wanted)


def evaluate(node: Node, doc: Any) -> bool:
    if isinstance(node, Or):
        return any(evaluate(p, doc) for p in node.parts)
    if isinstance(node, And):
        return all(evaluate(p, doc) for p in node.parts)
    actual = _resolve(doc, node.path)
    if actual is _MISSING or actual is None or isinstance(actual, (bool, dict, list)):
        # The selector must point to a string or number, for = and != alike (booleans are
        # documented only with IS TRUE / IS FALSE, which this evaluator does not support).
        return False
    eq = _value_equals(actual, node.value)
    return eq if node.op == "=" else not eq


def matches(pattern: str, doc: Any) -> bool:
    return evaluate(parse(pattern), doc)


def names_by_source(node: Node) -> dict[str, list[str]]:
    """{eventSource: [eventName, ...]} of a pattern shaped
    (src = A && (name = x || ...)) || (src = B && (...)); fails on any other shape."""
    out: dict[str, list[str]] = {}
    for branch in node.parts if isinstance(node, Or) else (node,):
        assert isinstance(branch, And) and len(branch.parts) == 2, branch
        src, names = branch.parts
        assert isinstance(src, Cmp) and src.path == ("eventSource",) and src.op == "=", src
        names = names.parts if isinstance(names, Or) else (names,)
        for n in names:
            assert isinstance(n, Cmp) and n.path == ("eventName",) and n.op == "=", n
            assert "*" not in n.value, f"wildcard event name {n.value!r} would also pass read calls"
        assert src.value not in out, f"{src.value} listed twice"
        out[src.value] = [n.value for n in names]
    return out


# ------------------------------------------------------------------------------- fixtures


def _load(path: pathlib.Path) -> dict:
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict), f"{path.name}: one bare CloudTrail record per file (as CloudWatch Logs gets it)"
    return doc


EKS_FIXTURES = sorted(FIXTURES.glob("*.json"))
FAILED = sorted((FIXTURES / "failed").glob("*.json"))
VARIANTS = sorted((FIXTURES / "variants").glob("*.json"))
NEGATIVE = sorted((FIXTURES / "negative").glob("*.json"))
PASSING = EKS_FIXTURES + FAILED + VARIANTS


def _rel(p: pathlib.Path) -> str:
    return str(p.relative_to(FIXTURES))


# ------------------------------------------------------------------- the template pattern


def test_pattern_fits_cloudwatch_logs_limit_and_is_fully_parenthesised():
    assert len(PATTERN) <= 1024  # PutSubscriptionFilter filterPattern: max length 1024
    parse(PATTERN, strict=True)


def test_pattern_lists_exactly_the_sts_calls_and_one_eks_call_per_fixture():
    by_source = names_by_source(parse(PATTERN))
    assert set(by_source) == {"sts.amazonaws.com", "eks.amazonaws.com"}
    assert sorted(by_source["sts.amazonaws.com"]) == sorted(STS_EVENTS)
    assert len(EKS_FIXTURES) == 15
    assert sorted(by_source["eks.amazonaws.com"]) == sorted(p.stem for p in EKS_FIXTURES)


@pytest.mark.parametrize("path", PASSING, ids=_rel)
def test_pattern_passes_eks_access_calls(path):
    assert matches(PATTERN, _load(path))


@pytest.mark.parametrize("name", STS_EVENTS)
def test_pattern_passes_credential_issuing_sts_calls(name):
    record = {"eventVersion": "1.08", "eventSource": "sts.amazonaws.com", "eventName": name,
              "awsRegion": "us-east-1", "recipientAccountId": "111122223333",
              "responseElements": {"credentials": {"accessKeyId": "ASIAEXAMPLETEMPKEY01"}}}
    assert matches(PATTERN, record)
    assert not matches(PATTERN, dict(record, eventName=name + "X"))
    # The name must come with its own service: an STS name from EKS does not pass.
    assert not matches(PATTERN, dict(record, eventSource="eks.amazonaws.com"))


@pytest.mark.parametrize("path", NEGATIVE, ids=_rel)
def test_pattern_rejects_other_calls(path):
    assert not matches(PATTERN, _load(path))


def test_pattern_rejects_eks_names_from_another_service():
    for p in EKS_FIXTURES:
        assert not matches(PATTERN, dict(_load(p), eventSource="sts.amazonaws.com")), p.name


def test_fixtures_are_what_their_names_say():
    assert len(NEGATIVE) == 7
    for p in EKS_FIXTURES + FAILED + VARIANTS:
        doc = _load(p)
        assert doc["eventSource"] == "eks.amazonaws.com"
        assert doc["eventName"] == p.stem.split("-")[0], p.name
        assert doc["recipientAccountId"] == "111122223333" and doc["awsRegion"] == "eu-west-1"
        assert doc["requestParameters"]["name"] == "prod-east", p.name  # the cluster, every call
        assert doc["readOnly"] is False and doc["eventType"] == "AwsApiCall"
        assert doc["userIdentity"]["accessKeyId"].startswith("ASIA")
        assert ("errorCode" in doc) == (p in FAILED)
    (failed,) = FAILED
    doc = _load(failed)
    assert doc["errorCode"] == "AccessDeniedException" and doc["errorMessage"]
    assert doc["requestParameters"] and doc["responseElements"] is None
    assert {_load(p)["eventName"] for p in NEGATIVE} == {
        "DescribeCluster", "ListAccessEntries", "DescribeAccessEntry", "RunInstances", "CreateRole",
        "GetCallerIdentity", "TagResource"}


# ---------------------------------------------------------------------- the evaluator


# The compound-condition example of the CloudWatch Logs documentation, with the results the
# documentation states for each pattern.
DOC_JSON = {
    "user": {"id": 1, "email": "John.Stiles@example.com"},
    "users": [{"id": 2, "email": "John.Doe@example.com"}, {"id": 3, "email": "Jane.Doe@example.com"}],
    "actions": ["GET", "PUT", "DELETE"],
    "coordinates": [[0, 1, 2], [4, 5, 6], [7, 8, 9]],
}
DOC_EXAMPLES = [
    ('{ ($.user.id = 1) && ($.users[0].email = "John.Doe@example.com") }', True),
    ('{ ($.user.id = 2 && $.users[0].email = "nonmatch") || $.actions[2] = "GET" }', False),
    ('{ $.user.email = "John.Stiles@example.com" || $.coordinates[0][1] = nonmatch && $.actions[2] = nomatch }', True),
    ('{ ($.user.email = "John.Stiles@example.com" || $.coordinates[0][1] = nonmatch) && $.actions[2] = nomatch }', False),
]


@pytest.mark.parametrize("pattern,expected", DOC_EXAMPLES)
def test_evaluator_reproduces_the_documented_compound_examples(pattern, expected):
    assert matches(pattern, DOC_JSON) is expected


def test_evaluator_binds_and_tighter_than_or():
    doc = {"a": "1", "b": "0", "c": "0"}
    assert matches('{ $.a = 1 || $.b = 2 && $.c = 3 }', doc)
    assert not matches('{ ($.a = 1 || $.b = 2) && $.c = 3 }', doc)
    assert not matches('{ $.b = 2 && $.c = 3 || $.a = 9 }', doc)
    with pytest.raises(PatternSyntaxError):
        parse('{ $.a = 1 || $.b = 2 && $.c = 3 }', strict=True)
    parse('{ ($.a = 1) || (($.b = 2) && ($.c = 3)) }', strict=True)


def test_evaluator_rejects_what_does_not_match():
    everything = [_load(p) for p in PASSING + NEGATIVE]
    for pattern in ['{ $.eventName = "NoSuchCall" }', '{ $.eventSource = "eks.amazonaws.com" && $.eventName = "x" }',
                    '{ $.noSuchField = "prod-east" }', '{ $.noSuchField != "prod-east" }']:
        assert not any(matches(pattern, d) for d in everything), pattern
    assert all(matches('{ $.eventID = "*" }', d) for d in everything)


def test_evaluator_wildcards_equality_and_paths():
    describe = _load(FIXTURES / "negative" / "DescribeAccessEntry.json")
    create = _load(FIXTURES / "CreateAccessEntry.json")
    # Why the template lists names: a suffix wildcard would also pass the read call.
    assert matches('{ $.eventName = "*AccessEntry" }', describe)
    assert matches('{ $.eventName = "Describe*" }', describe) and not matches('{ $.eventName = "Describe*" }', create)
    assert matches('{ $.eventName = *Access* }', create)
    assert not matches('{ $.eventName = "Create*Entry" }', create)  # an inner * is literal
    assert matches('{ $.requestParameters.name = "prod-east" }', create)
    assert matches('{ $.requestParameters.kubernetesGroups[0] = "payments-admins" }', create)
    assert not matches('{ $.requestParameters.kubernetesGroups[1] = "payments-admins" }', create)
    assert matches('{ $.eventSource != "sts.amazonaws.com" }', create)
    assert not matches('{ $.eventSource != "eks.amazonaws.com" }', create)
    assert not matches('{ $.readOnly = false }', create) and not matches('{ $.readOnly != false }', create)
    # A selector on an object or array matches neither = nor != (documented).
    assert not matches('{ $.requestParameters = "x" }', create)
    assert not matches('{ $.requestParameters != "x" }', create)
    assert matches('{ $.sourceIPAddress != 123.123.* }', {"sourceIPAddress": "111.111.111.111"})
    assert not matches('{ $.sourceIPAddress != 123.123.* }', {"sourceIPAddress": "123.123.0.1"})


@pytest.mark.parametrize("bad", [
    '$.eventName = "x"', '{ $.eventName = "x"', '{ ($.eventName = "x" }', '{ $.eventName = "x") }',
    '{ $.eventName = "x" } extra', '{ $.eventName "x" }', '{ $.eventName = }', '{ $.eventName = "x" & $.a = b }',
    '{ $.eventName = "x" || }', '{ $.a IS NULL }', '{ $.a NOT EXISTS }', '{ $.latency >= 500 }',
    '{ eventName = "x" }', '{ $.eventName = "unterminated }', '{ }',
])
def test_evaluator_rejects_malformed_or_unsupported_patterns(bad):
    with pytest.raises(PatternSyntaxError):
        parse(bad)
