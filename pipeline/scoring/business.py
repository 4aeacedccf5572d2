"""Offline business metrics of a ranking on a labelled day, with NumPy (no loop over requests).

An exposure's realized *gain* is what it earned once its outcome is known (``GainConf``). A
ranking is judged per request (the items shown together) by the NDCG@K of its gains, weighted by
the value at stake in each request, and by the revenue of its top K items; ``grid_search_linear``
finds the linear fusion weights that rank a day best.

Shape notation: N rows (exposures), R requests, T terms, C candidate weight vectors.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, TypeVar

import numpy as np
import pandas as pd

from pipeline.scoring.conf import GainConf

# Works on NumPy arrays and on Spark columns alike (both overload the arithmetic operators).
Values = TypeVar("Values")


def gain(click: Values, conversion: Values, value: Values, conf: GainConf) -> Values:
    """Realized gain of each exposure.

    Args:
        click: [N] 0/1 clicks (array or Spark column).
        conversion: [N] 0/1 conversions.
        value: [N] conversion values (0 without a conversion).
        conf: the gain coefficients.

    Returns:
        [N] ``conf.click * click + conf.conversion * conversion + conf.value * value``.
    """
    return conf.click * click + conf.conversion * conversion + conf.value * value


def request_codes(request_ids: np.ndarray) -> np.ndarray:
    """Dense request codes ``0..R-1`` [N] (rows with a missing request id form one request)."""
    codes, _ = pd.factorize(np.asarray(request_ids), use_na_sentinel=False)
    return codes.astype(np.int64)


def ranks_within_requests(codes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """0-based rank of each row within its request by descending score.

    Args:
        codes: [N] request codes from ``request_codes``.
        scores: [N] scores; ties keep the input order, NaN ranks last.

    Returns:
        [N] int64 ranks (0 = shown first).
    """
    n = len(codes)
    # lexsort's last key is the primary one: request, then score descending, then input order.
    order = np.lexsort((np.arange(n), -np.asarray(scores, dtype=np.float64), codes))
    counts = np.bincount(codes)
    starts = np.cumsum(counts) - counts  # [R] first sorted position of each request
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n) - starts[codes[order]]
    return ranks


def ndcg_at_k(request_ids: np.ndarray, scores: np.ndarray, gains: np.ndarray, k: int, *,
              per_request: bool = False) -> float:
    """Value-weighted NDCG@K: ``sum over requests of DCG@K / sum of ideal DCG@K``.

    DCG@K of a request is ``sum over its top-K rows of gain / log2(rank + 2)`` (linear gains, since
    they are money). Each request weighs by its ideal DCG, the value at stake in it: a plain mean
    would let many requests with one click outvote the few with a large order, and rank against
    the business. Ranking every request by expected gain maximizes the expected value-weighted
    NDCG; ``per_request=True`` gives the usual mean of per-request NDCGs instead. Requests without
    any gain have no ideal ranking and count for nothing.

    Args:
        request_ids: [N] request of each row.
        scores: [N] ranking scores (higher is shown first).
        gains: [N] realized gains >= 0.
        k: cut-off >= 1.
        per_request: average per-request NDCGs with equal weights.

    Returns:
        NDCG@K in [0, 1]; NaN when no request has a gain.
    """
    codes = request_codes(request_ids)
    gains = np.asarray(gains, dtype=np.float64)
    return _ndcg(codes, scores, gains, k, _dcg(codes, gains, gains, k), per_request)


def revenue_at_k(request_ids: np.ndarray, scores: np.ndarray, values: np.ndarray, k: int) -> float:
    """Mean revenue per request of its top K rows.

    Args:
        request_ids: [N] request of each row.
        scores: [N] ranking scores.
        values: [N] realized conversion values.
        k: cut-off >= 1.

    Returns:
        ``sum of values ranked < k / R`` (every request counts, with or without revenue).
    """
    return _revenue(request_codes(request_ids), scores, np.asarray(values, dtype=np.float64), k)


@dataclass(frozen=True)
class GridResult:
    """The best linear fusion of a grid search.

    Args:
        weights: term -> weight in the terms' own units, summing to 1 (ready for ``fusion.linear``).
        ndcg: its NDCG@K.
        revenue: its revenue@K per request.
        candidates: how many weight vectors were tried.
    """

    weights: dict[str, float]
    ndcg: float
    revenue: float
    candidates: int


def simplex_grid(num_terms: int, steps: int) -> np.ndarray:
    """Every weight vector with entries in ``{0, 1/steps, ..., 1}`` that sum to 1.

    Ranking within a request ignores the scale of the weights, so the simplex covers every
    direction of non-negative weights.

    Returns:
        [C, T] with ``C = binomial(steps + T - 1, T - 1)``.
    """
    rows = [(*head, steps - sum(head)) for head in itertools.product(range(steps + 1), repeat=num_terms - 1)
            if sum(head) <= steps]
    return np.asarray(rows, dtype=np.float64) / steps


def grid_search_linear(terms: Mapping[str, np.ndarray], request_ids: np.ndarray, gains: np.ndarray,
                       values: np.ndarray, *, k: int, steps: int) -> GridResult:
    """The linear fusion ``sum_t w_t * term_t`` with the best (value-weighted) NDCG@K, over a simplex grid.

    Each term is divided by its mean first, so that one grid step moves every term by the same
    share of its typical size (p_ctr and an expected value differ by orders of magnitude); the
    winner is converted back to weights on the raw terms. Ties go to the first in grid order.

    Args:
        terms: term name -> [N] values (e.g. ``p_ctr``, ``p_ctcvr``, ``expected_value``).
        request_ids: [N] request of each row.
        gains: [N] realized gains (the NDCG target).
        values: [N] conversion values (for the winner's revenue@K).
        k: cut-off.
        steps: grid resolution per term.

    Returns:
        The best weights and their metrics.
    """
    names = list(terms)
    matrix = np.column_stack([np.asarray(terms[t], dtype=np.float64) for t in names])  # [N, T]
    scale = matrix.mean(axis=0)  # [T]
    scale[~(scale > 0)] = 1.0  # an all-zero term keeps its raw units
    normalised = matrix / scale  # [N, T]
    codes = request_codes(request_ids)
    gains = np.asarray(gains, dtype=np.float64)
    ideal = _dcg(codes, gains, gains, k)
    candidates = simplex_grid(len(names), steps)  # [C, T]
    ndcgs = [_ndcg(codes, normalised @ weights, gains, k, ideal) for weights in candidates]
    best = int(np.nanargmax(ndcgs))
    raw = candidates[best] / scale
    return GridResult(weights={name: float(w) for name, w in zip(names, raw / raw.sum())},
                      ndcg=float(ndcgs[best]),
                      revenue=_revenue(codes, normalised @ candidates[best], np.asarray(values, dtype=np.float64), k),
                      candidates=len(candidates))


def _dcg(codes: np.ndarray, scores: np.ndarray, gains: np.ndarray, k: int) -> np.ndarray:
    """[R] DCG@K of each request when ranked by ``scores``."""
    ranks = ranks_within_requests(codes, scores)
    top = ranks < k
    discounted = gains[top] / np.log2(ranks[top] + 2.0)
    return np.bincount(codes[top], weights=discounted, minlength=int(codes.max()) + 1 if len(codes) else 0)


def _revenue(codes: np.ndarray, scores: np.ndarray, values: np.ndarray, k: int) -> float:
    if not len(codes):
        return float("nan")
    top = ranks_within_requests(codes, scores) < k
    return float(values[top].sum() / (codes.max() + 1))


def _ndcg(codes: np.ndarray, scores: np.ndarray, gains: np.ndarray, k: int, ideal: np.ndarray,
          per_request: bool = False) -> float:
    has_gain = ideal > 0
    if not has_gain.any():
        return float("nan")
    dcg = _dcg(codes, scores, gains, k)[has_gain]
    return float(np.mean(dcg / ideal[has_gain]) if per_request else dcg.sum() / ideal[has_gain].sum())
