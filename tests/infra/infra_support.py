"""Helpers shared by the infrastructure tests (tests/infra).

Kept out of conftest.py so that test modules can import them by a unique module name
(`conftest` may exist at several levels of tests/).
"""

from __future__ import annotations

import importlib.util
import pathlib
import socket
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TEMPLATES = sorted(INFRA.glob("*.yaml"))


def _load_render():
    spec = importlib.util.spec_from_file_location("auditlake_infra_render", INFRA / "render.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


render = sys.modules.get("auditlake_infra_render") or _load_render()


def load(name: str) -> dict:
    """A template under infra/, short-form tags turned into their long form."""
    return render.load_template(INFRA / name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Aws:
    """boto3 clients against the moto server, optionally as another account."""

    def __init__(self, endpoint: str, region: str = "us-east-1", account: str | None = None):
        import boto3

        self.endpoint = endpoint
        self.region = region
        creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        base = boto3.session.Session(region_name=region, **creds)
        if account:
            # moto serves requests signed with assumed-role credentials as that account.
            sts = base.client("sts", endpoint_url=endpoint)
            c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/moto-test", RoleSessionName="infra-tests")["Credentials"]
            creds = {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"],
                     "aws_session_token": c["SessionToken"]}
        self.session = boto3.session.Session(region_name=region, **creds)
        self.account = self.client("sts").get_caller_identity()["Account"]

    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.endpoint)
