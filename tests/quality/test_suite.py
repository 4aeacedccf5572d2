"""The model-quality suite in small: one small world, the floor, the naive CVR model and ESMM,
scored against the generator's truth with the shipped training defaults."""
import pandas as pd
import pytest

from pipeline.quality.suite import run_suite
from pipeline.quality.worlds import WORLDS, World

# A small world with the sparse worlds' long tails and selection bias: 3,000 users and 800
# items, 40,000 exposures a day (two training days), CTR 8 %, CVR 8 % of clicks.
SMALL = World("small", "a small sparse world for the tests",
              {"num_users": 3000, "num_items": 800, "exposures_per_day": 40_000, "ctr": 0.08, "cvr": 0.08,
               "item_popularity_exponent": 1.0, "user_activity_sigma": 1.2, "affinity_scale": 0.5,
               "shared_interest": 0.5, "selection_bias": 1.0}, train_days=2)
MODELS = ["lr", "cvr_naive", "esmm"]


@pytest.fixture(scope="module")
def results(spark) -> pd.DataFrame:
    return run_suite(spark, [SMALL], seeds=[1], models=MODELS, log=lambda line: None).set_index("model")


def test_every_row_has_the_model_and_the_oracle(results):
    assert list(results.index) == MODELS
    for model, row in results.iterrows():
        for prefix in ("cvr_clicked", "cvr_es"):
            assert 0.5 < row[f"{prefix}_auc"] < row[f"{prefix}_oracle"], (model, prefix)
    for prefix in ("ctr", "ctcvr"):
        assert results.loc["cvr_naive", f"{prefix}_auc"] != results.loc["cvr_naive", f"{prefix}_auc"]  # NaN: no estimate
        for model in ("lr", "esmm"):
            assert 0.5 < results.loc[model, f"{prefix}_auc"] < results.loc[model, f"{prefix}_oracle"], (model, prefix)


def test_esmm_holds_up_against_the_floor_and_the_naive_cvr_model(results):
    esmm, lr, naive = results.loc["esmm"], results.loc["lr"], results.loc["cvr_naive"]
    # Measured on this world and seed with the shipped defaults: CTR 0.710 against the floor's
    # 0.701, CTCVR 0.683 against 0.700, entire-space CVR 0.626 against the naive model's 0.647.
    # The defaults before the model-quality work left ESMM's entire-space CVR near or below
    # chance on sparse worlds (docs/quality.md); the bounds leave room for the CTCVR noise of a
    # test day with about 250 conversions.
    assert esmm["ctr_auc"] >= lr["ctr_auc"] - 0.005
    assert esmm["ctcvr_auc"] >= lr["ctcvr_auc"] - 0.03
    assert esmm["cvr_es_auc"] > 0.6 and esmm["cvr_es_auc"] >= naive["cvr_es_auc"] - 0.03


def test_the_worlds_differ_where_real_logs_differ():
    worlds = {name: dict(world.synth) for name, world in WORLDS.items()}
    assert set(worlds) == {"demo", "sparse", "bias_up", "cold", "large"}
    assert worlds["sparse"]["shared_interest"] < 0 < worlds["bias_up"]["shared_interest"]
    assert worlds["cold"]["cold_share"] > 0
    large = WORLDS["large"]
    assert large.train_days * worlds["large"]["exposures_per_day"] >= 1_000_000
