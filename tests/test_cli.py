"""The command line's contract: --version, and exit status 2 for usage and input errors."""
import subprocess
import sys

import pytest

from pipeline import __version__
from pipeline.cli import main


def test_version():
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"pipeline (mtrank) {__version__}"


def test_usage_and_input_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as usage:
        main(["no-such-command"])
    assert usage.value.code == 2
    assert main(["score", "--date", "2026-13-01"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "pipeline score: error: bad --date: '2026-13-01' (expected a date YYYY-MM-DD)"
    assert main(["show-config", "--set", "training.nope=1"]) == 2
