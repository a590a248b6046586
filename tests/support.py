"""Shared helpers of the black-box system tests (fixtures are in conftest.py).

The tests drive the real `auditlake` binary (path from $AUDITLAKE_BIN, set by the test
command), read the lake back with independent readers (DuckDB, pyarrow), and talk to a
real `moto_server` on a free loopback port for AWS APIs.
"""
from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The organisation trails of the system tests (events.py, the golden fixture, the
# Kinesis tests): the only CloudTrail log groups the CLI under test trusts.
TRUSTED_TRAILS = ",".join(
    f"999999999999:{g}"
    for g in ("aws-cloudtrail-logs-o-x", "aws-cloudtrail-logs-o-example", "aws-cloudtrail-logs-o-test")
)
os.environ.setdefault("AUDITLAKE_TRUSTED_TRAILS", TRUSTED_TRAILS)


def auditlake_path() -> pathlib.Path:
    env = os.environ.get("AUDITLAKE_BIN")
    if env:
        return pathlib.Path(env)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "auditlake"


def wait_for_binary(path: pathlib.Path, timeout: float = 120) -> bool:
    """The binary may be missing for a moment while it is relinked: wait for it."""
    deadline = time.time() + timeout
    while not pathlib.Path(path).exists():
        if time.time() > deadline:
            return False
        time.sleep(2)
    return True


def run(cmd, *, env=None, input=None, check=True, timeout=600):
    full_env = dict(os.environ)
    full_env.update(env or {})
    r = subprocess.run([str(c) for c in cmd], env=full_env, input=input, capture_output=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(
            f"{cmd} exited {r.returncode}\nstdout: {r.stdout.decode(errors='replace')[-3000:]}\n"
            f"stderr: {r.stderr.decode(errors='replace')[-3000:]}"
        )
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """A moto_server process on loopback; stop() and start() simulate outages."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1)
                return self
            except Exception:
                time.sleep(0.2)
        raise RuntimeError("moto_server did not start")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def env(self) -> dict:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AUDITLAKE_TRUSTED_TRAILS": os.environ["AUDITLAKE_TRUSTED_TRAILS"],
        }

    def client(self, service: str):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

