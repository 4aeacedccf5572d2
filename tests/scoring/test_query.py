import datetime as dt

import pytest

from pipeline.errors import PipelineError
from pipeline.io import delta
from pipeline.scoring.query import top_scores

from tests.samples.conftest import make_cfg

DAY = dt.date(2026, 10, 10)


def test_top_scores_reads_the_days_highest_scores_back(spark, tmp_path):
    cfg = make_cfg(tmp_path)
    rows = [(f"imp-{i}", f"u{i % 3}", f"i{i}", 0.1, 0.2, 0.02, float(i), "linear", "m1", day)
            for i in range(8) for day in (DAY, DAY - dt.timedelta(days=1))]
    df = spark.createDataFrame(rows, "impression_id string, user_id string, item_id string, p_ctr double, "
                                     "p_cvr double, p_ctcvr double, score double, fusion string, model_id string, dt date")
    delta.replace_partitions(df, cfg.table_path("scores"), [DAY, DAY - dt.timedelta(days=1)])
    top = top_scores(spark, cfg, DAY, k=3)
    assert top["item_id"].tolist() == ["i7", "i6", "i5"] and (top["dt"] == DAY).all()
    with pytest.raises(PipelineError, match="no scores for 2026-10-11"):
        top_scores(spark, cfg, DAY + dt.timedelta(days=1))


def test_top_scores_without_a_table_says_what_to_run(spark, tmp_path):
    with pytest.raises(PipelineError, match="run pipeline score first"):
        top_scores(spark, make_cfg(tmp_path), DAY)
