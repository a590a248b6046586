"""Fixtures of the infrastructure tests (tests/infra); helpers live in infra_support.py."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.append(str(HERE))  # infra_support, cfn_emulator (test modules import them)

from infra_support import free_port  # noqa: E402


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    """A moto server on a free loopback port for the whole session; stopped at the end."""
    import moto  # noqa: F401  (fail loudly here if moto[server] is missing)

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=fh, stderr=subprocess.STDOUT, env=env,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited: {log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("moto_server did not start within 30 s")
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
