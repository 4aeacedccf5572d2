"""The plan of a night (pipeline/plan.py): the one place its dates, window and train rule are decided."""
import datetime as dt
import json

import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.plan import label_delay_days, plan_night, train_due, training_window
from pipeline.registry import has_champion

from tests.conftest import TEST_SPARK_SETTINGS, set_args

TUESDAY = dt.date(2026, 10, 6)
SUNDAY = dt.date(2026, 10, 11)


def test_training_waits_for_final_validation_and_test_days():
    cfg = load_config()
    assert label_delay_days(cfg) == 4 + 1 + 1  # lookback (1 + 3 days), validation, test
    assert training_window(cfg, dt.date(2026, 10, 20)) == (dt.date(2026, 10, 1), dt.date(2026, 10, 14))


def test_window_follows_the_conf():
    cfg = load_config(None, ["nightly.train_days=28", "labels.attribution_window_days=1",
                             "labels.max_delay_days=2", "training.test_days=0"])
    assert label_delay_days(cfg) == 2 + 1 + 0
    assert training_window(cfg, dt.date(2026, 10, 31)) == (dt.date(2026, 10, 1), dt.date(2026, 10, 28))


@pytest.mark.parametrize("sets, date, has_model, due, reason", [
    ([], TUESDAY, True, False, "not due: trains on sundays (or --set nightly.force_train=true)"),
    ([], SUNDAY, True, True, "sunday"),
    ([], TUESDAY, False, True, "no champion model yet"),
    (["nightly.train_weekday=tuesday"], TUESDAY, True, True, "tuesday"),
    (["nightly.train_weekday=tuesday"], SUNDAY, True, False,
     "not due: trains on tuesdays (or --set nightly.force_train=true)"),
    (["nightly.train_weekday=daily"], TUESDAY, True, True, "daily"),
    (["nightly.force_train=true"], TUESDAY, True, True, "nightly.force_train"),
])
def test_train_is_due_on_its_weekday_daily_when_forced_or_on_the_first_night(sets, date, has_model, due, reason):
    assert train_due(load_config(None, sets), date, has_model) == (due, reason)


def test_plan_of_a_night():
    cfg = load_config(None, ["nightly.model=mmoe", "report.path=/tmp/r.html"])
    plan = plan_night(cfg, SUNDAY, has_model=True)
    assert json.loads(plan.to_json()) == {
        "date": "2026-10-11",
        "build_samples": "2026-10-11",
        "train": {"due": True, "reason": "sunday", "start": "2026-09-22", "end": "2026-10-05", "model": "mmoe"},
        "score": "2026-10-11",
        "report": "/tmp/r.html",
    }
    assert plan.line() == "plan 2026-10-11: build-samples, train mmoe on 2026-09-22..2026-10-05 (sunday), score 2026-10-11, report"
    assert plan_night(load_config(), SUNDAY, True).train.model == "esmm"  # model.name by default


def test_plan_command_prints_one_json_line(tmp_path, capsys):
    sets = set_args(*TEST_SPARK_SETTINGS, f"storage.root={tmp_path}")
    assert main(["plan", "--date", "2026-10-06", *sets]) == 0
    captured = capsys.readouterr()
    (line,) = captured.out.splitlines()
    plan = json.loads(line)
    assert plan["train"]["due"] is True and plan["train"]["reason"] == "no champion model yet"
    assert captured.err.startswith("plan 2026-10-06: build-samples, train esmm on 2026-09-17..2026-09-30 ")


def test_a_night_without_a_champion_is_planned_without_spark(tmp_path):
    def no_session():
        raise AssertionError("a Spark session was asked for")

    assert has_champion(no_session, load_config(None, [f"storage.root={tmp_path}"])) is False


@pytest.mark.parametrize("args", [[], ["--date", "2026-10-06", "--start", "2026-09-01", "--end", "2026-09-02"],
                                  ["--start", "2026-09-01"], ["--date", "2026-13-01"]])
def test_train_takes_a_night_or_a_range(args, capsys):
    assert main(["train", *args]) == 2
    assert capsys.readouterr().err.startswith("pipeline train: error: ")
