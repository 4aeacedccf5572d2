"""pipeline run: the nightly chain (build-samples, train when due, score, report) on a tiny world."""
import datetime as dt
import os

import pytest
from pyspark.sql import functions as F

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import ConfigError, PipelineError, RunFailure
from pipeline.io import delta
from pipeline.nightly import NightlySummary, StepResult, _run_step

from tests.conftest import TEST_SPARK_SETTINGS, set_args
from tests.samples.conftest import copy_world
from tests.worlds import tiny_world

# Six days of 2,000 exposures; a one-day attribution window makes a day final two days later.
WORLD = tiny_world(6, "nightly.train_days=2")
NIGHT = dt.date(2026, 10, 6)  # a Tuesday


def _fails(error):
    def job():
        raise error
    return job


@pytest.mark.parametrize("error, kind", [(PipelineError("no raw exposures for 2026-10-06"), PipelineError),
                                         (RunFailure("rank 1 stalled for 300 s"), RunFailure)])
def test_an_input_error_or_a_run_failure_is_a_failed_step_with_its_class(error, kind):
    step = _run_step("train", _fails(error))
    assert (step.status, step.detail, step.error) == ("failed", str(error), kind)
    summary = NightlySummary(NIGHT, (StepResult("build-samples", "ok", "built"), step,
                                     StepResult("score", "not run", "an earlier step failed")))
    with pytest.raises(kind, match=f"^train failed: {error}$"):
        summary.raise_for_failure()


def test_a_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        _run_step("score", lambda: 1 / 0)


def test_bad_nightly_keys_are_named():
    with pytest.raises(ConfigError, match="nightly.train_weekday must be a weekday or daily, got 'sundays'"):
        load_config(None, ["nightly.train_weekday=sundays"])
    with pytest.raises(ConfigError, match="nightly.model must be one of"):
        load_config(None, ["nightly.model=gbdt"])


@pytest.fixture(scope="module")
def world(night_world_template, tmp_path_factory):
    root = tmp_path_factory.mktemp("nightly")
    return copy_world(night_world_template, root, [*WORLD, f"report.path={root}/report.html"])


def run(cfg, *sets):
    args = set_args(*TEST_SPARK_SETTINGS, *WORLD, f"storage.root={cfg.storage.root}", f"report.path={cfg.report.path}", *sets)
    return main(["run", "--date", str(NIGHT), *args])


def test_first_night_trains_scores_and_reports(spark, world, capsys):
    assert run(world) == 0
    out = capsys.readouterr().out
    for step in ("build-samples", "train", "score", "report"):
        assert f"\n{step:<14} ok " in out
    assert "[due: no champion model yet]" in out
    assert f"run {NIGHT}: ok (build-samples ok, train ok, score ok, report ok)" in out
    models = delta.read_table(spark, world.table_path("models")).collect()
    assert [(m["train_start"], m["train_end"]) for m in models] == [(dt.date(2026, 10, 2), dt.date(2026, 10, 3))]
    scores = delta.read_table(spark, world.table_path("scores")).where(F.col("dt") == F.lit(NIGHT))
    assert scores.count() == 2000
    assert os.path.exists(world.report.path)


def test_next_night_skips_training_and_rescores(spark, world, capsys):
    assert run(world) == 0
    out = capsys.readouterr().out
    assert "\ntrain          skipped " in out and "not due: trains on sundays" in out
    assert delta.read_table(spark, world.table_path("models")).count() == 1
    scores = delta.read_table(spark, world.table_path("scores")).where(F.col("dt") == F.lit(NIGHT))
    assert scores.count() == 2000  # replaced, not appended


def test_a_failed_step_stops_the_chain_in_one_line(spark, world, capsys):
    scores_version = delta.current_version(spark, world.table_path("scores"))
    assert run(world, "nightly.force_train=true", "nightly.train_days=10") == 2
    captured = capsys.readouterr()
    assert "\ntrain          failed " in captured.out
    assert "\nscore          not run " in captured.out and "\nreport         not run " in captured.out
    # Standard error: the steps' log records, then the one-line error (no traceback).
    *records, error = captured.err.splitlines()
    assert error.startswith("pipeline run: error: train failed: ")
    assert not [r for r in records if r.startswith("Traceback")], records
    assert any(" ERROR pipeline.nightly: train: failed: " in r for r in records)
    assert delta.current_version(spark, world.table_path("scores")) == scores_version
