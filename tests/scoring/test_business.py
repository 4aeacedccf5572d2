import math

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.scoring import business
from pipeline.scoring.conf import GainConf


def naive_ndcg(request_ids, scores, gains, k, per_request):
    """One request at a time, straight from the definition."""
    dcgs, idcgs = [], []
    for request in dict.fromkeys(request_ids):
        rows = [i for i, r in enumerate(request_ids) if r == request]
        ranked = sorted(rows, key=lambda i: -scores[i])  # sorted is stable: ties keep input order
        ideal = sorted((gains[i] for i in rows), reverse=True)
        dcg = sum(gains[i] / math.log2(rank + 2) for rank, i in enumerate(ranked[:k]))
        idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal[:k]))
        if idcg > 0:
            dcgs.append(dcg)
            idcgs.append(idcg)
    if per_request:
        return sum(d / i for d, i in zip(dcgs, idcgs)) / len(dcgs)
    return sum(dcgs) / sum(idcgs)


def test_gain_is_the_configured_sum():
    conf = GainConf(click=0.5, conversion=2.0, value=0.1)
    click, conversion, value = np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([0.0, 0.0, 30.0])
    assert business.gain(click, conversion, value, conf).tolist() == pytest.approx([0.0, 0.5, 5.5])


@pytest.mark.parametrize("kwargs, message", [
    ({"click": -1.0}, "fusion.gain.click must be a number >= 0"),
    ({"value": math.inf}, "fusion.gain.value must be a number >= 0"),
    ({"click": 0.0, "conversion": 0.0, "value": 0.0}, "fusion.gain: at least one"),
])
def test_bad_gain_names_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        GainConf(**kwargs)


def test_ranks_within_requests_descend_by_score_and_keep_input_order_on_ties():
    codes = np.array([0, 1, 0, 0, 1])
    scores = np.array([0.2, 0.5, 0.9, 0.2, 0.1])
    assert business.ranks_within_requests(codes, scores).tolist() == [1, 0, 0, 2, 1]


def test_ndcg_of_hand_made_requests():
    request_ids = np.array(["a", "a", "a", "b", "b", "c"])
    scores = np.array([0.9, 0.5, 0.1, 0.2, 0.8, 0.3])
    gains = np.array([0.0, 10.0, 0.0, 0.0, 1.0, 0.0])  # request c has no gain: left out
    # a: its gain of 10 sits at rank 1 (ideal: rank 0); b: its gain of 1 at rank 0.
    dcg_a, dcg_b = 10 / math.log2(3), 1.0
    assert business.ndcg_at_k(request_ids, scores, gains, k=2) == pytest.approx((dcg_a + dcg_b) / (10 + 1))
    assert business.ndcg_at_k(request_ids, scores, gains, k=2, per_request=True) == pytest.approx(
        (dcg_a / 10 + dcg_b / 1) / 2)
    assert business.ndcg_at_k(request_ids, scores, gains, k=1) == pytest.approx(1 / 11)
    assert business.ndcg_at_k(request_ids, gains, gains, k=1) == 1.0


def test_ndcg_matches_the_definition_on_random_requests():
    rng = np.random.default_rng(3)
    request_ids = rng.integers(0, 40, 300).astype(str)
    scores = rng.integers(0, 5, 300).astype(float)  # many ties
    gains = rng.exponential(1.0, 300) * (rng.random(300) < 0.3)
    for k in (1, 3, 50):
        for per_request in (False, True):
            assert business.ndcg_at_k(request_ids, scores, gains, k, per_request=per_request) == pytest.approx(
                naive_ndcg(list(request_ids), list(scores), list(gains), k, per_request))


def test_ndcg_is_nan_without_any_gain():
    assert math.isnan(business.ndcg_at_k(np.array(["a", "a"]), np.array([1.0, 0.0]), np.zeros(2), k=1))


def test_revenue_at_k_averages_over_every_request():
    request_ids = np.array(["a", "a", "a", "b", "b", "c"])
    scores = np.array([0.9, 0.5, 0.1, 0.2, 0.8, 0.3])
    values = np.array([5.0, 20.0, 100.0, 7.0, 0.0, 0.0])
    assert business.revenue_at_k(request_ids, scores, values, k=2) == pytest.approx((5 + 20 + 7 + 0 + 0) / 3)
    assert business.revenue_at_k(request_ids, scores, values, k=1) == pytest.approx(5 / 3)


def test_simplex_grid_covers_every_mix():
    grid = business.simplex_grid(3, 4)
    assert grid.shape == (15, 3)  # binomial(4 + 2, 2)
    assert np.allclose(grid.sum(axis=1), 1.0)
    assert len({tuple(row) for row in grid}) == 15


def test_grid_search_recovers_the_linear_mix_of_the_gain():
    rng = np.random.default_rng(0)
    n = 4000
    request_ids = np.repeat(np.arange(n // 8), 8)
    terms = {"p_ctr": rng.random(n) * 0.1, "expected_value": rng.random(n) * 5.0}
    # The gain is exactly 0.3 / mean(p_ctr) * p_ctr + 0.7 / mean(ev) * ev: the grid holds this mix.
    mix = {t: w / terms[t].mean() for t, w in (("p_ctr", 0.3), ("expected_value", 0.7))}
    gains = mix["p_ctr"] * terms["p_ctr"] + mix["expected_value"] * terms["expected_value"]
    values = rng.random(n)

    best = business.grid_search_linear(terms, request_ids, gains, values, k=3, steps=10)

    assert best.ndcg == pytest.approx(1.0)
    assert best.candidates == 11
    total = sum(mix.values())
    assert best.weights == pytest.approx({t: w / total for t, w in mix.items()})
    scores = best.weights["p_ctr"] * terms["p_ctr"] + best.weights["expected_value"] * terms["expected_value"]
    assert best.revenue == pytest.approx(business.revenue_at_k(request_ids, scores, values, k=3))
