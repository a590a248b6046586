"""cfn-lint and checkov on every CloudFormation template under infra/.

Both tools are hard requirements (tests/requirements.txt); a missing tool fails the test
instead of skipping it. checkov runs with --skip-download so that it never contacts its
vendor's API (this machine has no network besides package registries).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from infra_support import INFRA, TEMPLATES, load


CFN_LINT = "import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())"
CHECKOV = (
    "import sys, warnings; warnings.simplefilter('ignore'); from checkov.main import Checkov; "
    "sys.argv[0] = 'checkov'; sys.exit(Checkov().run())"
)


def _run(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false",
               LOG_LEVEL="WARNING")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=INFRA.parent)


def test_there_are_templates():
    names = {p.name for p in TEMPLATES}
    assert {"central.yaml", "member.yaml", "stackset.yaml", "cloudtrail-feed.yaml"} <= names


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_clean(template):
    """No errors and no warnings (exit code 0). A warning may only be silenced in the
    template with Metadata cfn-lint config ignore_checks plus a comment saying why."""
    r = _run(["-c", CFN_LINT, "--format", "parseable", str(template)])
    assert r.returncode == 0, f"cfn-lint {template.name} (exit {r.returncode}):\n{r.stdout}{r.stderr}"


def test_checkov_passes_and_every_skip_is_justified():
    r = _run(["-c", CHECKOV, "-d", str(INFRA), "--framework", "cloudformation",
              "--skip-download", "--output", "json"])
    assert r.stdout.strip(), f"checkov printed nothing (exit {r.returncode}): {r.stderr[-3000:]}"
    reports = json.loads(r.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed, skipped, passed = [], [], 0
    for rep in reports:
        res = rep.get("results", {})
        failed += res.get("failed_checks", [])
        skipped += res.get("skipped_checks", [])
        passed += len(res.get("passed_checks", []))
    assert not failed, "checkov failures:\n" + "\n".join(
        f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in failed)
    assert passed > 0, "checkov evaluated nothing"
    assert r.returncode == 0, r.stderr[-3000:]
    for c in skipped:
        assert len((c.get("check_result", {}).get("suppress_comment") or "").strip()) >= 30, (
            f"{c['check_id']} on {c['resource']} is skipped without a real justification")


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_suppressions_carry_reasons(template):
    """Every checkov skip has an id and a comment; cfn-lint ignores need a recorded reason."""
    t = load(template.name)
    for lid, res in t.get("Resources", {}).items():
        meta = res.get("Metadata", {})
        for skip in meta.get("checkov", {}).get("skip", []):
            assert skip.get("id", "").startswith("CKV"), f"{lid}: {skip}"
            assert len(skip.get("comment", "").strip()) >= 30, f"{lid}: {skip['id']} has no justification"
        ignores = meta.get("cfn-lint", {}).get("config", {}).get("ignore_checks", [])
        # None are needed today. Adding one means adding it here with the reason.
        allowed: dict[tuple[str, str], str] = {}
        for rule in ignores:
            assert (lid, rule) in allowed, f"{lid}: cfn-lint {rule} is ignored without a recorded reason"
