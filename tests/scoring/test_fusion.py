import math

import numpy as np
import pandas as pd
import pytest
import torch
from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from pipeline.confload import to_dict
from pipeline.errors import ConfigError, PipelineError
from pipeline.scoring import fusion, learned as learned_fusion
from pipeline.scoring.conf import FusionConf, GainConf
from pipeline.scoring.evaluate import offline_comparison
from pipeline.tables import SEGMENT_WEIGHTS_SCHEMA, WEIGHT_COLUMNS

# Hand-made scored rows: two known segments, one unseen (toys) and one missing; one price missing.
ROWS = pd.DataFrame({
    "impression_id": ["i1", "i2", "i3", "i4"],
    "request_id": ["r1", "r1", "r2", "r2"],
    "category": ["shoes", "books", "toys", None],
    "p_ctr": [0.10, 0.05, 0.20, 0.01],
    "p_cvr": [0.20, 0.40, 0.10, 0.50],
    "p_ctcvr": [0.02, 0.02, 0.02, 0.005],
    "p_value": [math.log1p(30.0), math.log1p(10.0), 0.0, math.log1p(100.0)],
    "price": [25.0, None, 8.0, 120.0],
})
PRICE_OR_DEFAULT = [25.0, 15.0, 8.0, 120.0]
CONF = FusionConf.from_dict({
    "strategy": "dynamic", "value_source": "column", "value_column": "price", "value_per_conversion": 15.0,
    "linear": {"p_ctr": 0.5, "p_ctcvr": 2.0, "expected_value": 0.1},
    "power": {"p_ctr": 1.0, "p_cvr": 0.5, "expected_value": 0.25},
    "gain": {"click": 1.0, "conversion": 3.0, "value": 0.2},
    "dynamic": {"segment": "category"},
})
WEIGHTS = pd.DataFrame({
    "segment_column": ["category", "category", "category", "device"],
    "segment": ["shoes", "books", None, "shoes"],
    "exposures": [100, 50, 150, 7],
    "w_p_ctr": [1.0, 2.0, 3.0, 99.0],
    "w_p_cvr": [0.0, 0.0, 0.0, 0.0],
    "w_p_ctcvr": [10.0, 20.0, 30.0, 99.0],
    "w_expected_value": [0.5, 0.25, 0.125, 99.0],
})


def expected_scores(strategy):
    """Each strategy's formula, one row at a time."""
    out = []
    for i, row in ROWS.iterrows():
        ev = row.p_ctcvr * PRICE_OR_DEFAULT[i]
        if strategy == "linear":
            out.append(0.5 * row.p_ctr + 2.0 * row.p_ctcvr + 0.1 * ev)
        elif strategy == "power":
            out.append(row.p_ctr * row.p_cvr ** 0.5 * ev ** 0.25)
        else:  # dynamic: toys (unseen) and None take the global row
            w = {"shoes": (1.0, 10.0, 0.5), "books": (2.0, 20.0, 0.25)}.get(row.category, (3.0, 30.0, 0.125))
            out.append(w[0] * row.p_ctr + w[1] * row.p_ctcvr + w[2] * ev)
    return out


def spark_rows(spark):
    return spark.createDataFrame(ROWS.astype(object).where(ROWS.notna(), None))


def spark_weights(spark, frame=WEIGHTS):
    return spark.createDataFrame(frame.astype(object).where(frame.notna(), None), SEGMENT_WEIGHTS_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Configuration


def test_default_section_is_valid_and_overridable():
    conf = FusionConf.from_dict({})
    assert conf == FusionConf()
    assert dict(conf.linear) == {"p_ctr": 0.1, "expected_value": 1.0}
    assert dict(CONF.linear) == {"p_ctr": 0.5, "p_ctcvr": 2.0, "expected_value": 0.1}


def test_weights_are_numbers_and_text_is_refused():
    conf = FusionConf.from_dict({"linear": {"expected_value": 2, "p_ctr": 1}})
    assert dict(conf.linear) == {"p_ctr": 1.0, "expected_value": 2.0}
    assert all(type(value) is float for value in conf.linear.values())
    with pytest.raises(ConfigError, match=r"fusion\.linear\.p_ctr: expected a number, got '1'"):
        FusionConf.from_dict({"linear": {"p_ctr": "1"}})


@pytest.mark.parametrize("data, message", [
    ({"linear": {"p_click": 1.0}}, r"fusion\.linear\.p_click: unknown term"),
    ({"power": {"price": 1.0}}, r"fusion\.power\.price: unknown term"),
    ({"linear": {"p_ctr": -0.5}}, r"fusion\.linear\.p_ctr must be >= 0"),
    ({"linear": {"p_ctr": "high"}}, r"fusion\.linear\.p_ctr: expected a number, got 'high'"),
    ({"linear": {"p_ctr": True}}, r"fusion\.linear\.p_ctr: expected a number"),
    ({"linear": {}}, r"fusion\.linear: needs a term with a value > 0"),
    ({"power": {"p_ctr": 0.0}}, r"fusion\.power: needs a term with a value > 0"),
    ({"strategy": "magic"}, r"fusion\.strategy: must be one of"),
    ({"strategy": "dynamic", "dynamic": {"segment": None}}, r"fusion\.dynamic\.segment: required"),
    ({"strategy": "learned", "learned": {"categorical": []}}, r"fusion\.learned: needs a categorical or numeric"),
    ({"value_source": "column"}, r"fusion\.value_column: required when fusion\.value_source is column"),
    ({"value_source": "model"}, r"fusion\.value_source: must be one of"),
    ({"terms": ["p_ctr", "ctr"]}, r"fusion\.terms\[1\]: unknown term 'ctr'"),
    ({"gain": {"click": -1}}, r"fusion\.gain\.click must be a number >= 0"),
    ({"dynamic": {"days": 0}}, r"fusion\.dynamic\.days must be >= 1"),
    ({"evaluation": {"k": 0}}, r"fusion\.evaluation\.k must be >= 1"),
    ({"lineer": {"p_ctr": 1}}, r"unknown key 'fusion\.lineer'"),
    ({"dynamic": {"segmnt": "category"}}, r"unknown key 'fusion\.dynamic\.segmnt'"),
])
def test_a_bad_section_names_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        FusionConf.from_dict(data)


def test_an_unknown_strategy_is_refused_without_the_loader_too():
    with pytest.raises(ConfigError, match=r"fusion\.strategy: must be one of"):
        FusionConf(strategy="magic")


# ---------------------------------------------------------------------------------------------
# Terms and strategies: Spark and NumPy give the formula's numbers


def test_expected_value_is_p_ctcvr_times_the_value_of_a_conversion(spark):
    values = {"column": PRICE_OR_DEFAULT, "constant": [15.0] * 4,
              "p_value": [30.0, 10.0, 0.0, 100.0]}  # expm1 of the value head's log1p
    confs = {source: FusionConf.from_dict({"value_source": source, "value_column": "price",
                                           "value_per_conversion": 15.0}) for source in values}
    terms = {"expected_value": "test"}
    rows = spark_rows(spark)
    # One Spark job for the three sources.
    got = rows.orderBy("impression_id").select(
        *[fusion.term_columns(conf, rows.columns, terms)["expected_value"].alias(source)
          for source, conf in confs.items()]).collect()

    for source, value in values.items():
        expected = [p * v for p, v in zip(ROWS.p_ctcvr, value)]
        assert fusion.term_arrays(confs[source], ROWS, terms)["expected_value"] == pytest.approx(expected)
        assert [row[source] for row in got] == pytest.approx(expected)


def test_spark_and_numpy_scores_equal_the_formula(spark):
    strategies = ("linear", "power", "dynamic")
    rows = fusion.join_segment_weights(spark_rows(spark), spark_weights(spark), segment="category",
                                       default=CONF.linear)
    got = rows.orderBy("impression_id").select(
        *[fusion.fused_score_column(CONF, rows.columns, strategy).alias(strategy) for strategy in strategies]).collect()

    for strategy in strategies:
        numpy_scores = fusion.fused_scores(CONF, ROWS, strategy=strategy, weights_table=WEIGHTS)
        assert numpy_scores == pytest.approx(expected_scores(strategy), rel=1e-12), strategy
        assert [row[strategy] for row in got] == pytest.approx(list(numpy_scores), rel=1e-12), strategy


def test_segments_without_weights_fall_back_to_the_global_row_then_to_the_default(spark):
    no_global = WEIGHTS[WEIGHTS.segment.notna()]
    default = {"p_ctr": 7.0, "expected_value": 9.0}
    joined = fusion.join_segment_weights(spark_rows(spark), spark_weights(spark, no_global), segment="category",
                                         default=default)
    collected = joined.collect()
    by_impression = {r.impression_id: (r.w_p_ctr, r.w_p_ctcvr, r.w_expected_value) for r in collected}
    arrays = fusion.segment_weight_arrays(ROWS.category.to_numpy(), no_global, segment="category", default=default)

    assert by_impression == {"i1": (1.0, 10.0, 0.5), "i2": (2.0, 20.0, 0.25), "i3": (7.0, 0.0, 9.0),
                             "i4": (7.0, 0.0, 9.0)}
    assert [tuple(arrays[t][i] for t in ("p_ctr", "p_ctcvr", "expected_value")) for i in range(4)] == \
        [by_impression[i] for i in ROWS.impression_id]
    assert joined.columns == [*ROWS.columns, *WEIGHT_COLUMNS]
    assert len(collected) == len(ROWS)


def test_segment_weights_follow_the_calibrated_expected_gain_formula(spark):
    rows = spark.createDataFrame(pd.DataFrame({
        "category": ["A", "A", "B", None],
        "click": [1, 0, 0, 1], "conversion": [1, 0, 0, 1], "conversion_value": [50.0, 0.0, 0.0, 20.0],
        "p_ctr": [0.5, 0.5, 0.2, 0.4], "p_ctcvr": [0.1, 0.1, 0.05, 0.2], "expected_value": [10.0, 10.0, 2.0, 4.0],
    }).astype(object).where(lambda f: f.notna(), None))
    gain = GainConf(click=1.0, conversion=3.0, value=0.2)

    weights = fusion.segment_weights(rows, segment="category", gain=gain, smoothing=2.0)

    # All rows: N = 4; clicks 2, conversions 2, value 70; sums of p_ctr 1.6, p_ctcvr 0.45, ev 26.
    # Per segment: g * (Y(s) + m * Y / N) / (P(s) + m * P / N), with m = 2, so m / N = 0.5;
    # globally g * Y / P. Columns: w_p_ctr, w_p_cvr (never priced), w_p_ctcvr, w_expected_value.
    expected = [
        ("category", "A", 2, 1 * (1 + 1.0) / (1.0 + 0.8), 0.0, 3 * (1 + 1.0) / (0.2 + 0.225),
         0.2 * (50 + 35) / (20 + 13)),
        ("category", "B", 1, 1 * (0 + 1.0) / (0.2 + 0.8), 0.0, 3 * (0 + 1.0) / (0.05 + 0.225),
         0.2 * (0 + 35) / (2 + 13)),
        ("category", None, 4, 1 * 2 / 1.6, 0.0, 3 * 2 / 0.45, 0.2 * 70 / 26),
    ]
    assertDataFrameEqual(weights, spark.createDataFrame(expected, SEGMENT_WEIGHTS_SCHEMA), rtol=1e-12)


def test_segment_weights_need_only_the_columns_of_priced_terms(spark):
    rows = spark.createDataFrame([("A", 1, 0.5)], "category string, click int, p_ctr double")
    weights = fusion.segment_weights(rows, segment="category", gain=GainConf(click=2.0, value=0.0),
                                     smoothing=0.0)
    assertSchemaEqual(weights.schema, SEGMENT_WEIGHTS_SCHEMA)
    with pytest.raises(PipelineError, match=r"fusion\.gain\.value: needs column 'expected_value'"):
        fusion.segment_weights(rows, segment="category", gain=GainConf(click=2.0, value=1.0), smoothing=0.0)


def test_missing_columns_name_the_conf_key(spark):
    rows = spark_rows(spark).drop("category", "p_value")
    with pytest.raises(PipelineError, match=r"fusion\.dynamic\.segment: needs column 'category'"):
        fusion.join_segment_weights(rows, spark_weights(spark), segment="category", default={})
    with pytest.raises(PipelineError, match=r"fusion\.value_source: needs column 'p_value'"):
        fusion.fused_score_column(FusionConf.from_dict({"value_source": "p_value"}), rows.columns)
    with pytest.raises(PipelineError, match=r"fusion\.power\.p_cvr: needs column 'p_cvr'"):
        fusion.fused_scores(CONF, ROWS.drop(columns="p_cvr"), strategy="power")
    with pytest.raises(PipelineError, match=r"dynamic needs the weight columns"):
        fusion.fused_score_column(CONF, rows.columns)
    with pytest.raises(PipelineError, match=r"dynamic needs segment weights"):
        fusion.fused_scores(CONF, ROWS)
    with pytest.raises(PipelineError, match=r"learned is a network"):
        fusion.fused_score_column(CONF, rows.columns, "learned")


# ---------------------------------------------------------------------------------------------
# Learned and the offline comparison on a world whose best weights differ by segment


def segment_world(seed, requests, slots=8):
    """Items of two categories mixed in every request: a cheap one where only clicks pay and a
    luxury one whose orders are worth 1000 times more. Predictions are the true probabilities;
    the value of a conversion is unknown to the model (a constant 20)."""
    rng = np.random.default_rng(seed)
    n = requests * slots
    category = rng.choice(["cheap", "luxury"], n)
    p_ctr, p_cvr = rng.beta(2, 20, n), rng.beta(2, 8, n)
    order_value = np.where(category == "luxury", 1000.0, 1.0) * rng.lognormal(0.0, 0.3, n)
    click = (rng.random(n) < p_ctr).astype(int)
    conversion = click * (rng.random(n) < p_cvr)
    return pd.DataFrame({
        "request_id": np.repeat(np.arange(requests), slots).astype(str), "category": category,
        "device": rng.choice(["ios", "android"], n), "user_activity": rng.gamma(2.0, 1.0, n), "p_ctr": p_ctr, "p_cvr": p_cvr, "p_ctcvr": p_ctr * p_cvr,
        "click": click, "conversion": conversion, "conversion_value": conversion * order_value,
    })


WORLD_CONF = FusionConf.from_dict({
    "value_per_conversion": 20.0, "gain": {"click": 1.0, "conversion": 0.0, "value": 0.05},
    "dynamic": {"segment": "category", "smoothing": 100.0},
    "learned": {"categorical": ["category", "device"], "epochs": 5, "batch_requests": 256},
    "evaluation": {"k": 3, "grid_steps": 10},
})


def test_learned_fusion_is_deterministic_learns_and_survives_save_and_load(tmp_path):
    conf = FusionConf.from_dict({**to_dict(WORLD_CONF), "learned": {**to_dict(WORLD_CONF.learned),
                                                                     "numeric": ["user_activity"]}})
    day = segment_world(seed=5, requests=800)
    first, history = learned_fusion.train_learned(day, conf)
    second, again = learned_fusion.train_learned(day, conf)
    assert history == again
    for name, tensor in first.gate.state_dict().items():
        assert torch.equal(tensor, second.gate.state_dict()[name]), name
    assert history[-1] < history[0]

    first.save(str(tmp_path / "gate"))
    loaded = learned_fusion.LearnedFusion.load(str(tmp_path / "gate"))
    # Unknown and missing categories get id 0, a missing number the training mean.
    unseen = day.head(3).assign(category=["cheap", "jewels", None], user_activity=[1.0, None, 3.0])
    scores = fusion.fused_scores(conf, unseen, strategy="learned", learned=loaded)
    assert np.isfinite(scores).all()
    assert scores.tolist() == fusion.fused_scores(conf, unseen, strategy="learned", learned=first).tolist()
    assert loaded.spec == first.spec
    assert np.allclose(loaded.weights(unseen).sum(axis=1), 1.0)


def test_segment_aware_strategies_beat_the_best_linear_fusion(spark, tmp_path):
    history = segment_world(seed=1, requests=5000)
    path = str(tmp_path / "history.parquet")
    history.to_parquet(path)  # a file read is far faster than createDataFrame of 40k pandas rows
    rows = fusion.with_terms(spark.read.parquet(path), WORLD_CONF, fusion.strategy_terms(WORLD_CONF, "dynamic"))
    weights = fusion.segment_weights(rows, segment="category", gain=WORLD_CONF.gain,
                                     smoothing=WORLD_CONF.dynamic.smoothing).toPandas()
    learned, _ = learned_fusion.train_learned(segment_world(seed=2, requests=4000), WORLD_CONF)

    report = offline_comparison(WORLD_CONF, segment_world(seed=3, requests=8000), weights_table=weights,
                                       learned=learned).set_index("strategy")

    luxury = weights.set_index("segment").loc["luxury"]
    assert luxury.w_expected_value > 100 * weights.set_index("segment").loc["cheap"].w_expected_value
    best_linear = report.loc["linear_grid_best"]
    for strategy in ("dynamic", "learned"):
        assert report.loc[strategy, "ndcg_at_k"] > best_linear.ndcg_at_k + 0.05, report
        assert report.loc[strategy, "revenue_at_k"] > best_linear.revenue_at_k, report
    assert set(report.index) == {"linear", "power", "dynamic", "learned", "linear_grid_best"}
