"""Predictions and the metrics the papers and industry report, per task.

CTR over all exposures; CVR over clicked exposures (what the papers report); CTCVR over all
exposures; GAUC by user, log loss, calibration, reliability bins and ROC points; value RMSE on
conversions.
With the generator's truth: the oracle AUC of each task (the true probabilities as scores) and the
entire-space CVR AUC against would-convert-if-clicked labels, where ESMM should beat a CVR model
trained on clicks only.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import pandas as pd
import torch
from pipeline.models import RankingModel
from pipeline import metrics as m

Batch = dict[str, torch.Tensor]


@torch.no_grad()
def predict(model: RankingModel, batches: Iterable[Batch]) -> dict[str, np.ndarray]:
    """Concatenated ``p_*`` estimates [N] over ``batches`` (in order), in eval mode."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        for name, value in model.probabilities(model(batch["cat"], batch["num"])).items():
            parts.setdefault(name, []).append(value.float().numpy())
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def binary_metrics(labels: np.ndarray, probs: np.ndarray, users: Optional[np.ndarray] = None) -> dict:
    out = {"auc": m.auc(labels, probs), "logloss": m.logloss(labels, probs),
           "calibration": m.calibration(labels, probs), "rows": int(len(labels)),
           "positives": int(np.sum(labels)), "reliability": m.reliability(labels, probs),
           "roc": m.roc_points(labels, probs)}
    if users is not None:
        out["gauc"] = m.gauc(labels, probs, users)
    return out


def evaluate(predictions: dict[str, np.ndarray], arrays: dict[str, np.ndarray],
             truth: Optional[pd.DataFrame] = None) -> dict[str, dict]:
    """Metrics per task for the predictions the model makes.

    Args:
        predictions: ``p_ctr``, ``p_cvr``, ``p_ctcvr``, ``p_value`` [N] (those the model has).
        arrays: labels and keys of the same rows (``click``, ``conversion``, ``conversion_value``,
            ``user_id``, ``impression_id``).
        truth: the generator's truth indexed by ``impression_id`` (optional).
    """
    click, conversion, users = arrays["click"], arrays["conversion"], arrays["user_id"]
    clicked = click == 1
    out: dict[str, dict] = {}
    if "p_ctr" in predictions:
        out["ctr"] = binary_metrics(click, predictions["p_ctr"], users)
    if "p_cvr" in predictions:
        out["cvr"] = binary_metrics(conversion[clicked], predictions["p_cvr"][clicked], users[clicked])
    if "p_ctcvr" in predictions:
        out["ctcvr"] = binary_metrics(conversion, predictions["p_ctcvr"], users)
    if "p_value" in predictions:
        converted = conversion == 1
        out["value"] = {"rmse": m.rmse(np.log1p(arrays["conversion_value"][converted]),
                                       predictions["p_value"][converted]), "rows": int(converted.sum())}
    if truth is not None:
        t = truth.reindex(arrays["impression_id"])
        oracle = {"ctr": m.auc(click, t["p_ctr"].to_numpy()),
                  "cvr": m.auc(conversion[clicked], t["p_cvr"].to_numpy()[clicked]),
                  "ctcvr": m.auc(conversion, t["p_ctcvr"].to_numpy()),
                  "cvr_entire_space": m.auc(t["would_convert"].to_numpy(), t["p_cvr"].to_numpy())}
        for task, value in oracle.items():
            out.setdefault(task, {})["oracle_auc"] = value
        if "p_cvr" in predictions:
            out["cvr_entire_space"]["auc"] = m.auc(t["would_convert"].to_numpy(), predictions["p_cvr"])
    return out
