"""A CLI that behaves (issue #15): closed pipes, one-line AWS errors without retries of
what cannot heal, configuration errors that name their variable, validated options,
help text for every option and every option in the README, a demo that re-runs clean."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import time

import pytest

import events as E
from support import run

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SUBCOMMANDS = ["demo", "invoke", "ingest", "consume", "compact", "ddl"]


def piped_into_head(auditlake, args, lines=1, env=None):
    """Run `auditlake ARGS | head -n LINES`; returns (auditlake's status, its stderr)."""
    p = subprocess.Popen([str(auditlake), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    head = subprocess.run(["head", f"-n{lines}"], stdin=p.stdout, capture_output=True)
    p.stdout.close()
    err = p.stderr.read().decode()
    return p.wait(timeout=300), err, head.stdout


def closed_pipe(auditlake, args):
    """Run ARGS with stdout into a pipe nobody reads any more (its reader has gone)."""
    r, w = os.pipe()
    os.close(r)
    p = subprocess.Popen([str(auditlake), *args], stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    err = p.stderr.read().decode()
    return p.wait(timeout=300), err


def test_a_closed_pipe_ends_quietly_with_the_conventional_status(auditlake, tmp_path):
    status, err, out = piped_into_head(auditlake, ["demo", "--lake", str(tmp_path / "lake")], lines=2)
    assert out.startswith(b"eks-audit-lake demo:")
    # the report fits the pipe's buffer, so head may leave before or after the write
    assert status in (0, 141) and "panicked" not in err, err
    for args in (["demo", "--lake", str(tmp_path / "lake2")], ["ddl"]):
        status, err = closed_pipe(auditlake, args)
        assert status == 141, (args, status, err)
        assert "panicked" not in err and "Broken pipe" not in err, err
    for _ in range(3):
        status, err, _ = piped_into_head(auditlake, ["ddl"], lines=1)
        assert status in (0, 141) and "panicked" not in err, err


def test_aws_errors_are_one_line_and_not_retried_when_they_cannot_heal(auditlake, moto, tmp_path):
    env = moto.env()
    ev = tmp_path / "ev.json"
    import json
    ev.write_text(json.dumps(E.firehose_event([E.gz(E.audit_envelope("111122223333", "prod", [
        E.audit_event("a-1", "2024-11-26T13:30:00Z", "system:serviceaccount:a:b")]))])))
    r = run([auditlake, "invoke", "--event", ev, "--lake", "s3://no-such-bucket-cli/p"], env=env, check=False)
    err = r.stderr.decode()
    assert r.returncode == 1
    assert "NoSuchBucket" in err and "S3 PutObject" in err and "s3://no-such-bucket-cli/" in err, err
    assert "SdkBody" not in err and "Headers" not in err and "raw:" not in err, err
    assert len([l for l in err.splitlines() if l.startswith("auditlake:")]) == 1, err
    # a missing stream is not retried: one line, at once
    started = time.monotonic()
    r = run([auditlake, "consume", "--stream", "no-such-stream", "--lake", tmp_path / "lake", "--until-idle"],
            env=env, check=False, timeout=120)
    took = time.monotonic() - started
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "ResourceNotFoundException" in err and "no-such-stream" in err, err
    assert "retrying" not in err and "SdkBody" not in err, err
    assert took < 20, f"{took:.0f} s: a non-retryable error was retried"


def test_configuration_errors_name_their_variable(auditlake, tmp_path):
    ev = tmp_path / "ev.json"
    ev.write_text('{"invocationId": "i", "records": []}')
    for var, value in [("AUDITLAKE_AWS_AUTH", "/nonexistent.yaml"), ("AUDITLAKE_OIDC_CLUSTERS", "no-equals-sign"),
                       ("AUDITLAKE_TRUSTED_TRAILS", "1:x"), ("AUDITLAKE_RAW_ARCHIVE", "maybe"),
                       ("AUDITLAKE_MAX_BATCH_LOOKUPS", "lots")]:
        env = dict(os.environ, **{var: value})
        r = run([auditlake, "invoke", "--event", ev, "--lake", tmp_path / "lake"], env=env, check=False)
        err = r.stderr.decode()
        assert r.returncode == 2, (var, err)
        assert var in err and len(err.strip().splitlines()) == 1, (var, err)


def test_ddl_location_is_validated(auditlake, tmp_path):
    for bad in ["not-an-s3-uri", "/tmp/lake", "s3://X_bad/p"]:
        r = run([auditlake, "ddl", "--location", bad], check=False)
        assert r.returncode == 2 and b"--location" in r.stderr, (bad, r.stderr)
    ok = run([auditlake, "ddl", "--location", "s3://my-lake/org"]).stdout.decode()
    assert "LOCATION 's3://my-lake/org/eks_audit/'" in ok


def options(auditlake, cmd: list[str]) -> list[tuple[str, str]]:
    """(option, help text) of a subcommand's --help (clap's long form puts the text on
    the next, further indented line)."""
    text = run([auditlake, *cmd, "--help"]).stdout.decode()
    lines = text.split("Options:", 1)[1].splitlines() if "Options:" in text else []
    out = []
    for i, line in enumerate(lines):
        m = re.match(r"^\s+(?:-\w, )?(--[a-z][a-z-]*)(?: <[^>]+>)?\s*(.*)$", line)
        if not m:
            continue
        help_text = m[2].strip()
        if not help_text and i + 1 < len(lines) and not re.match(r"^\s+-", lines[i + 1]):
            help_text = lines[i + 1].strip()
        out.append((m[1], help_text))
    return out


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_option_has_help_text_and_is_in_the_readme(auditlake, cmd):
    opts = [(o, h) for o, h in options(auditlake, cmd.split()) if o not in ("--help", "--version")]
    assert opts, cmd
    # the README's options table: a row naming this command lists the option
    rows = [l for l in README.splitlines() if l.startswith("| `") and f"`{cmd}`" in l.split("|")[1]]
    assert rows, f"no README options row for {cmd}"
    for opt, help_text in opts:
        assert help_text, f"{cmd} {opt} has no help text"
        assert any(f"`{opt}" in r or f", `{opt}" in r for r in rows), f"{cmd} {opt} is not in the README's options table"


def test_the_demo_reruns_clean_and_refuses_a_foreign_directory(auditlake, tmp_path):
    lake = tmp_path / "lake"
    first = run([auditlake, "demo", "--lake", lake]).stdout.decode()
    second = run([auditlake, "demo", "--lake", lake])
    assert b"held an earlier demo run" in second.stderr
    strip = lambda t: re.sub(r" in \d+\.\d+ s", "", t)
    assert strip(second.stdout.decode()) == strip(first)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    r = run([auditlake, "demo", "--lake", foreign], check=False)
    assert r.returncode == 2 and b"not made by `auditlake demo`" in r.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"
