"""The benchmark's two Python peers (bench/peer/) still do what the benchmark compares
against: each self-check runs its peer through its CLI on a built Firehose event and
reads the Parquet back with pyarrow (rows, types, partitions, sort order, response)."""

import subprocess
import sys
from pathlib import Path

import pytest

PEER = Path(__file__).resolve().parents[1] / "bench" / "peer"


@pytest.mark.parametrize("selftest", ["selftest.py", "lean_selftest.py"])
def test_python_peer_selftest(selftest):
    r = subprocess.run(
        [sys.executable, str(PEER / selftest)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
