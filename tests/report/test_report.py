"""pipeline report on a tiny real world (generated, built, trained, scored): every section, the
figures embedded in the one file, no link out of it, notes instead of failures where a table is
missing, and the CLI."""
import base64
import datetime as dt
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.confload import to_dict
from pipeline.errors import ConfigError
from pipeline.report import build_report
from pipeline.report import gather
from pipeline.report.build import ReportSummary
from pipeline.scoring.score import score
from pipeline.synth.generate import generate
from pipeline.training.train import train_model

from tests.samples.conftest import backfill, make_cfg
from tests.worlds import tiny_world

# Four days of 2,000 exposures; with a one-day attribution window the backfill to 10-04 leaves
# 10-01..10-02 final. One epoch on 10-01 (validation and report day 10-02), then 10-02 scored.
WORLD = tiny_world(4)
D1, D2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)
SECTIONS = ("Data quality per run", "Label rates by date", "Training", "ROC and calibration", "Model comparison",
            "Score distributions")
IMAGE = 'src="data:image/png;base64,'


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    cfg = make_cfg(tmp_path_factory.mktemp("report"), *WORLD)
    generate(cfg, progress=False)
    backfill(spark, cfg, "2026-10-01", "2026-10-04")
    model = train_model(spark, cfg, D1, D1, model_name="esmm", progress=False)
    score(spark, cfg, D2)
    return cfg, model


@pytest.fixture(scope="module")
def report(spark, world, tmp_path_factory):
    cfg, _ = world
    summary = build_report(spark, cfg, str(tmp_path_factory.mktemp("out") / "nested" / "report.html"))
    with open(summary.path, encoding="utf-8") as fh:
        return summary, fh.read()


def images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_the_report_has_every_section_with_its_figures(world, report):
    cfg, model = world
    summary, page = report

    assert isinstance(summary, ReportSummary) and summary.sections == SECTIONS and summary.waiting == ()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    # run counts, quarantine reasons, label rates, loss curves, ROC + reliability, score histograms
    pngs = images(page)
    assert len(pngs) >= 6 and summary.images == len(pngs)
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in pngs)
    assert model.model_id in page and "no ROC points" not in page and "yet: run" not in page
    assert re.match(r"report: 6 sections, \d+ images, [\d,]+ KiB at .+report\.html; \d+\.\d s$", summary.line())


def test_the_report_is_one_file_with_no_link_out(report):
    _, page = report

    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "<iframe" not in page
    for target in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert target.startswith(("data:image/png;base64,", "#")), target


def test_roc_points_go_to_the_artifact_not_the_registry(spark, world):
    cfg, model = world
    stored = gather.artifact_json(model.artifact_uri, "metrics.json")
    registry = gather.models_frame(spark, cfg)

    for task in ("ctr", "cvr", "ctcvr"):
        roc = stored[task]["roc"]
        assert 2 <= len(roc) <= 51 and roc[0] == {"fpr": 0.0, "tpr": 0.0} and roc[-1] == {"fpr": 1.0, "tpr": 1.0}
        assert set(registry.iloc[0]["metrics"][task]) >= {"auc", "oracle_auc"}
        assert not any(isinstance(v, list) for v in registry.iloc[0]["metrics"][task].values())
    assert gather.comparison_table(registry)["alias"].tolist() == ["champion"]


def test_a_root_with_samples_only_gets_notes_instead_of_failures(spark, world, tmp_path):
    cfg, _ = world
    only_samples = make_cfg(tmp_path / "root", *WORLD, f"tables.samples={cfg.table_path('samples')}")

    summary = build_report(spark, only_samples, str(tmp_path / "report.html"))

    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert summary.waiting == tuple(title for title in SECTIONS if title != "Label rates by date")
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert "no runs or quarantine yet: run <code>pipeline build-samples</code>" in page
    assert "no registered models yet: run <code>pipeline train --start D1 --end D2</code>" in page
    assert "no scores yet: run <code>pipeline score --date D</code>" in page
    assert len(images(page)) == 1  # the label rates
    assert "(5 waiting for data: Data quality per run, Training" in summary.line()


def test_cli_writes_the_report_where_asked(world, tmp_path, capsys):
    cfg, _ = world
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump(to_dict(cfg)))
    out = tmp_path / "elsewhere" / "page.html"

    assert main(["report", "--conf", str(conf), "--out", str(out)]) == 0

    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("report: 6 sections, ") and lines[0].split(" at ")[1].startswith(str(out))
    assert lines[1] == f"open {out} in a browser (one self-contained file)"
    assert len(images(out.read_text(encoding="utf-8"))) >= 6


def test_report_path_is_a_conf_key():
    assert load_config(None).report.path == "./reports/report.html"
    assert load_config(None, ["report.path=/srv/reports/today.html"]).report.path == "/srv/reports/today.html"
    with pytest.raises(ConfigError, match="report.path"):
        load_config(None, ["report.path=/srv/reports/today.png"])


def test_label_rates_and_the_comparison_table_from_small_frames():
    counts = pd.DataFrame({"dt": [D1, D2], "rows": [100, 50], "clicks": [10, 0], "conversions": [2, 0],
                           "final": [True, False]})
    rates = gather.label_rates(counts)
    assert rates["ctr"].tolist() == [0.1, 0.0] and rates["ctcvr"].tolist() == [0.02, 0.0]
    assert rates["cvr"].iloc[0] == 0.2 and np.isnan(rates["cvr"].iloc[1])  # no clicks: no CVR

    models = pd.DataFrame({"model_id": ["a", "b"], "model_type": ["esmm", "ctr_dnn"], "train_start": [D1, D1],
                           "train_end": [D2, D2], "alias": ["champion", None],
                           "metrics": [{"ctr": {"auc": 0.7}, "cvr": {"auc": 0.6}}, {"ctr": {"auc": 0.71}}]})
    table = gather.comparison_table(models)
    assert table.columns.tolist() == ["model_id", "type", "alias", "train range", "ctr AUC", "cvr AUC"]
    assert gather.comparison_table(models.drop(columns="alias")).columns[2] == "train range"  # an older registry
    assert table["train range"].tolist() == ["2026-10-01..2026-10-02"] * 2
    assert json.loads(table.to_json(orient="records"))[1]["cvr AUC"] is None
