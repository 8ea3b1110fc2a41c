"""cfn-lint (AWS's resource specifications) finds no error in any synthesized template, and
every warning it gives is one of the few explained below: a new warning fails here, to be
fixed or explained."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.fixture_synth import Synthesized

CFN_LINT = Path(sys.executable).parent / "cfn-lint"
ERROR = 2  # cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational
# --format parseable: file:line:column:end line:end column:rule:message
_LINE = re.compile(r"^(?P<file>[^:]+):\d+:\d+:\d+:\d+:(?P<rule>[EWI]\d+):(?P<message>.*)$")

EXPLAINED = {
    # RDS takes a major version alone and picks a current minor (the RDS user guide's
    # "DB engine versions"); config pins the major on purpose (tenant_database.ENGINE).
    # cfn-lint's list of deprecated versions holds every major with any deprecated minor,
    # 10 to 17 alike, so a major alone always matches it.
    ("Data", "W3691"): "Engine version '15' for engine 'postgres' is deprecated",
    # DependsOn that CDK writes beside a Ref or GetAtt to the same resource (a Lambda on its
    # role, say): redundant, and CloudFormation orders by either.
    ("Data", "W3005"): "dependency already enforced",
    ("Network", "W3005"): "dependency already enforced",
    # Synth is offline and does no lookups (DESIGN.md), so config names the AZs.
    ("Network", "W3010"): "Avoid hardcoding availability zones",
}


def test_templates_have_no_cfn_lint_errors_and_only_explained_warnings(
        synthesized: Synthesized) -> None:
    paths = [str(p) for p in synthesized.template_paths()]
    assert len(paths) == 2
    result = subprocess.run([str(CFN_LINT), "--format", "parseable", *paths],
                            capture_output=True, text=True, timeout=300, check=False)
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert not result.returncode & ERROR, "\n".join(errors) or result.stderr
    unexplained = []
    for line in result.stdout.splitlines():
        found = _LINE.match(line)
        assert found, f"unparsed cfn-lint output: {line}"
        part = "Data" if found["file"].endswith("-Data.template.json") else "Network"
        expected = EXPLAINED.get((part, found["rule"]))
        if expected is None or expected not in found["message"]:
            unexplained.append(line)
    assert unexplained == []
