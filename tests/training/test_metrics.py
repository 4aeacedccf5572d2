"""Metrics on NumPy arrays: the ROC points stored with each model."""
import numpy as np

from pipeline.metrics import auc, gauc, roc_points


def area(points):
    fpr, tpr = np.array([p["fpr"] for p in points]), np.array([p["tpr"] for p in points])
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def test_roc_points_step_through_each_distinct_threshold():
    points = roc_points(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))

    assert points == [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.0, "tpr": 0.5}, {"fpr": 0.0, "tpr": 1.0},
                      {"fpr": 0.5, "tpr": 1.0}, {"fpr": 1.0, "tpr": 1.0}]


def test_tied_scores_move_together_and_one_class_has_no_curve():
    assert roc_points(np.array([0, 1, 0, 1]), np.full(4, 0.3)) == [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 1.0, "tpr": 1.0}]
    assert roc_points(np.ones(5), np.linspace(0, 1, 5)) == []


def test_full_curve_area_is_the_auc_and_thinned_curve_stays_close():
    rng = np.random.default_rng(3)
    labels = rng.random(5000) < 0.1
    scores = np.round(rng.normal(labels * 0.8, 1.0), 2)  # rounded: many ties

    full = roc_points(labels, scores, points=10**6)
    thinned = roc_points(labels, scores)

    assert abs(area(full) - auc(labels, scores)) < 1e-12
    assert len(thinned) <= 51 and thinned[0] == {"fpr": 0.0, "tpr": 0.0} and thinned[-1] == {"fpr": 1.0, "tpr": 1.0}
    for key in ("fpr", "tpr"):
        assert np.all(np.diff([p[key] for p in thinned]) >= 0)
    assert abs(area(thinned) - auc(labels, scores)) < 0.01


def test_gauc_is_the_row_weighted_mean_of_each_groups_auc():
    rng = np.random.default_rng(5)
    groups = rng.choice(np.array([f"u{i}" for i in range(300)], dtype=object), 20_000)
    labels = rng.random(20_000) < 0.2
    scores = np.round(rng.normal(labels * 0.5, 1.0), 1)  # rounded: ties inside groups

    total = weight = 0.0
    for group in np.unique(groups):
        rows = groups == group
        if 0 < labels[rows].sum() < rows.sum():
            total, weight = total + auc(labels[rows], scores[rows]) * rows.sum(), weight + rows.sum()

    assert abs(gauc(labels, scores, groups) - total / weight) < 1e-12
    assert gauc(np.array([1, 0, 1, 1]), np.array([0.9, 0.1, 0.4, 0.3]), np.array([1, 1, 2, 2])) == 1.0
    assert np.isnan(gauc(np.array([1, 0]), np.array([0.5, 0.2]), np.array([1, 2])))
