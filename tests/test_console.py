"""Logging and progress (pipeline/console.py) and the command's logging options."""
import json
import logging
import re
import subprocess
import sys

import pytest

from pipeline import console
from pipeline.errors import PipelineError

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR) pipeline[\w.]*: .+$")


@pytest.fixture(autouse=True)
def restore_logging():
    yield
    console.configure_logging("INFO", "text")


def test_text_records_carry_time_level_and_logger(capsys):
    console.configure_logging("INFO", "text")
    logging.getLogger("pipeline.samples.build").info("rebuilding %s", "2026-10-01..2026-10-05")
    logging.getLogger("pipeline.samples.build").debug("not shown at INFO")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and TEXT_LINE.match(lines[0]), lines
    assert lines[0].endswith(" INFO pipeline.samples.build: rebuilding 2026-10-01..2026-10-05")


def test_json_lines_and_levels(capsys):
    console.configure_logging("WARNING", "json")
    log = logging.getLogger("pipeline.training.loop")
    log.info("hidden by -q")
    log.warning("ignoring the checkpoint of another run")
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("WARNING", "pipeline.training.loop", "ignoring the checkpoint of another run")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", records[0]["time"])
    console.configure_logging("DEBUG", "text")
    log.debug("shown with -v")
    assert "DEBUG pipeline.training.loop: shown with -v" in capsys.readouterr().err


def test_a_bad_log_format_is_one_line():
    with pytest.raises(PipelineError, match="bad log format 'xml'"):
        console.configure_logging("INFO", "xml")


def test_progress_off_a_terminal_logs_whole_lines(capsys):
    console.configure_logging("INFO", "text")
    seen = console.Progress(range(5), total=5, desc="epoch 1/2", unit="batches", every_s=0.0,
                            logger=logging.getLogger("pipeline.training.loop"))
    running = {"loss": 0.5}
    seen.figures(lambda: {"ctr": f"{running['loss']:.4f}"})
    assert list(seen) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 6 and all(TEXT_LINE.match(line) for line in lines)  # one per item here, one when done
    assert re.search(r"epoch 1/2: 2/5 batches \(40%\), [\d.]+ batches/s, ctr=0.5000$", lines[1])
    assert re.search(r"epoch 1/2: 5/5 batches \(100%\) in [\d.]+ s, ", lines[-1])


def test_disabled_progress_is_silent(capsys):
    console.configure_logging("INFO", "text")
    assert list(console.progress(range(3), total=3, desc="x", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_the_command_logs_as_asked_without_carriage_returns(tmp_path):
    # generate: the one command that needs no Spark; its progress goes through console.progress.
    run = [sys.executable, "-m", "pipeline.cli", "generate", "--set", f"storage.root={tmp_path}",
           "--set", "synth.days=2", "--set", "synth.exposures_per_day=500",
           "--set", "synth.num_users=20", "--set", "synth.num_items=10", "--set", "synth.num_brands=5"]
    text = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("generate: ") and len(text.stdout.splitlines()) == 1  # the result
    assert "\r" not in text.stderr
    assert all(TEXT_LINE.match(line) for line in text.stderr.splitlines()), text.stderr
    assert "pipeline.synth.generate: generate: 2/2 days (100%) in" in text.stderr

    quiet = subprocess.run([*run, "-q"], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout.startswith("generate: ")

    as_json = subprocess.run([*run, "--log-format", "json", "--set", "synth.days=0"], capture_output=True,
                             text=True, timeout=300)
    assert as_json.returncode == 2
    [record] = [json.loads(line) for line in as_json.stderr.splitlines()]
    assert record["level"] == "ERROR" and record["message"].startswith("pipeline generate: error: ")
