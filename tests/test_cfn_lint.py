"""cfn-lint (AWS's resource specifications) finds no error in any synthesized template."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fixture_synth import Synthesized

CFN_LINT = Path(sys.executable).parent / "cfn-lint"
ERROR = 2  # cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational


def test_templates_have_no_cfn_lint_errors(synthesized: Synthesized) -> None:
    paths = [str(p) for p in synthesized.template_paths()]
    assert len(paths) == 2
    result = subprocess.run([str(CFN_LINT), "--format", "parseable", *paths],
                            capture_output=True, text=True, timeout=300, check=False)
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert not result.returncode & ERROR, "\n".join(errors) or result.stderr
