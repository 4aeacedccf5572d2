"""Model artifacts (the ``models`` registry is ``pipeline.registry``).

A model directory (``<storage.artifacts>/<model_id>/``) holds ``weights.pt`` (a state dict, loaded
with ``weights_only=True``), ``model.json`` (spec and input shape), ``encoders.json``, ``metrics.json``,
``history.json`` (per-epoch losses) and ``config.yaml`` (the effective conf of the run).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

import numpy as np
import torch
import yaml

from pipeline.config import Config
from pipeline.confload import to_dict
from pipeline.errors import PipelineError
from pipeline.features.encoders import Encoders
from pipeline.models import Inputs, ModelSpec, RankingModel, build_model


@dataclass(frozen=True)
class LoadedModel:
    model_id: str
    encoders: Encoders
    network: RankingModel

    @property
    def name(self) -> str:
        return self.network.spec.name


def save_artifact(directory: str, *, spec: ModelSpec, inputs: Inputs, network: torch.nn.Module,
                  encoders: Encoders, metrics: dict, history: list, cfg: Config) -> None:
    os.makedirs(directory, exist_ok=True)
    torch.save(network.state_dict(), os.path.join(directory, "weights.pt"))
    _write(directory, "model.json", json.dumps({"spec": dataclasses.asdict(spec), "inputs": dataclasses.asdict(inputs)},
                                               indent=1))
    _write(directory, "encoders.json", encoders.to_json())
    write_metrics(directory, metrics)
    _write(directory, "history.json", json.dumps(history, indent=1, default=float))
    _write(directory, "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))


def write_metrics(directory: str, metrics: dict) -> None:
    """(Re)writes the artifact's ``metrics.json``."""
    _write(directory, "metrics.json", json.dumps(metrics, indent=1, default=float))


def load_artifact(directory: str) -> LoadedModel:
    """Rebuilds the network from ``model.json`` and loads its weights (``weights_only=True``)."""
    if not os.path.exists(os.path.join(directory, "weights.pt")):
        raise PipelineError(f"no model artifact at {directory}")
    with open(os.path.join(directory, "model.json"), encoding="utf-8") as fh:
        described = json.load(fh)
    with open(os.path.join(directory, "encoders.json"), encoding="utf-8") as fh:
        encoders = Encoders.from_json(fh.read())
    if "inputs" not in described:
        raise PipelineError(f"{directory} was written by an earlier version of mtrank (model.json has no inputs); "
                            f"train the model again")
    network = build_model(ModelSpec(**described["spec"]), Inputs(**described["inputs"]))
    network.load_state_dict(torch.load(os.path.join(directory, "weights.pt"), weights_only=True))
    network.eval()
    return LoadedModel(model_id=os.path.basename(directory.rstrip("/")), encoders=encoders, network=network)


def _write(directory: str, name: str, text: str) -> None:
    with open(os.path.join(directory, name), "w", encoding="utf-8") as fh:
        fh.write(text)


@torch.no_grad()
def predict_arrays(model: LoadedModel, cat: np.ndarray, num: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """The model's estimates for encoded rows, in batches.

    Args:
        model: a loaded artifact (in eval mode).
        cat: [N, F] int64 ids.
        num: [N, N_num] float32 standardized values.
        batch_size: rows per forward pass.

    Returns:
        ``p_*`` -> [N] float64; ``p_ctcvr`` is recomputed as ``p_ctr * p_cvr`` in double, so
        the written table holds the contract's product exactly.
    """
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(cat), batch_size):
        logits = model.network(torch.from_numpy(cat[start:start + batch_size]),
                               torch.from_numpy(num[start:start + batch_size]))
        for name, value in model.network.probabilities(logits).items():  # [B] each
            parts.setdefault(name, []).append(value.double().numpy())
    out = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    if "p_ctr" in out and "p_cvr" in out:
        out["p_ctcvr"] = out["p_ctr"] * out["p_cvr"]
    return out
