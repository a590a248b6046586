"""Fixtures of the black-box system tests; helpers live in support.py (a module name
of its own: tests/infra has a conftest too)."""
from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from support import Moto, auditlake_path, free_port, run, wait_for_binary  # noqa: E402


@pytest.fixture(scope="session")
def auditlake() -> pathlib.Path:
    p = auditlake_path()
    if not wait_for_binary(p):
        pytest.fail(f"auditlake binary not found at {p}: build it first (cargo build) or set AUDITLAKE_BIN")
    return p


@pytest.fixture(scope="session")
def demo_lake(auditlake, tmp_path_factory) -> pathlib.Path:
    """The lake `auditlake demo` produces (built once per test session)."""
    lake = tmp_path_factory.mktemp("demo") / "lake"
    r = run([auditlake, "demo", "--lake", lake])
    (lake / "demo-report.txt").write_bytes(r.stdout)
    return lake


@pytest.fixture()
def moto():
    m = Moto(free_port()).start()
    try:
        yield m
    finally:
        m.stop()
