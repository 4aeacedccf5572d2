"""Learned fusion: a gating network over the context of an exposure mixes the fusion terms.

``score(x) = exp(c(x)) * sum_t softmax(a(x))_t * term_t / scale_t``, with ``a`` and ``c`` the
outputs of a small MLP over embedded categorical and standardized numeric context columns
(``fusion.learned``), and ``scale_t`` each term's mean on the training day. ``train_learned``
fits it on a labelled day with a listwise loss over each request's realized gain;
``LearnedFusion`` scores pandas frames (offline, or per Spark partition in ``pipeline score``)
and saves to and loads from a directory.

Shape notation: B rows, F categorical context fields, D embedding dim, N numeric context
features, T terms, R requests, L the largest request.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from pipeline.errors import PipelineError
from pipeline.models.modules import MLP, FusedEmbedding
from pipeline.scoring import business
from pipeline.scoring.conf import FusionConf, LearnedConf
from pipeline.scoring.fusion import as_text, check_columns, listed_terms, term_arrays
from pipeline.tables import LABELS


class FusionGate(nn.Module):
    """Context features -> a softmax mix over T terms and a log scale.

    Args:
        cardinalities: per categorical context field, its vocabulary size with index 0 (unknown).
        num_numeric: N.
        num_terms: T.
        embedding_dim: D.
        hidden: hidden sizes of the MLP.
    """

    def __init__(self, cardinalities: Sequence[int], num_numeric: int, num_terms: int,
                 embedding_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.embedding = FusedEmbedding(cardinalities, embedding_dim) if cardinalities else None
        input_dim = (self.embedding.output_dim if self.embedding else 0) + num_numeric
        self.mlp = MLP(input_dim, hidden, dropout=0.0)
        self.head = nn.Linear(self.mlp.output_dim, num_terms + 1)
        self.num_terms = num_terms

    def forward(self, cat: Tensor, num: Tensor) -> tuple[Tensor, Tensor]:
        """Mix and scale of each row.

        Args:
            cat: [B, F] long ids.
            num: [B, N] float standardized values.

        Returns:
            ``(mix [B, T]`` summing to 1 per row, ``log_scale [B])``.
        """
        parts = [num]
        if self.embedding is not None:
            parts.insert(0, self.embedding(cat).flatten(1))  # [B, F, D] -> [B, F * D]
        out = self.head(self.mlp(torch.cat(parts, dim=1)))  # [B, T + 1]
        return torch.softmax(out[:, :self.num_terms], dim=1), out[:, self.num_terms]

    def score(self, cat: Tensor, num: Tensor, normalised_terms: Tensor) -> Tensor:
        """``exp(log_scale) * sum_t mix_t * normalised_terms_t``.

        The scale lets segments of one request be worth more than others (a mix alone sums to 1);
        it is clamped so that exp stays finite.

        Args:
            cat: [B, F]; num: [B, N]; normalised_terms: [B, T], each term over its training mean.

        Returns:
            [B] scores.
        """
        mix, log_scale = self(cat, num)
        return torch.exp(log_scale.clamp(-20.0, 20.0)) * (mix * normalised_terms).sum(dim=1)  # [B]


@dataclass(frozen=True)
class GateSpec:
    """What rebuilds a trained gate and its inputs; saved as ``gate.json``.

    Args:
        terms: the terms it mixes, in order.
        term_scales: each term's mean on the training day (terms are divided by it).
        categorical: categorical context columns.
        vocabularies: per categorical column the values seen in training; value i has id i + 1,
            0 is unknown or missing.
        numeric: numeric context columns.
        numeric_stats: per numeric column its training (mean, std).
        embedding_dim: D.
        hidden: MLP hidden sizes.
    """

    terms: tuple[str, ...]
    term_scales: tuple[float, ...]
    categorical: tuple[str, ...]
    vocabularies: tuple[tuple[str, ...], ...]
    numeric: tuple[str, ...]
    numeric_stats: tuple[tuple[float, float], ...]
    embedding_dim: int
    hidden: tuple[int, ...]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "GateSpec":
        data = json.loads(text)
        return cls(terms=tuple(data["terms"]), term_scales=tuple(float(x) for x in data["term_scales"]),
                   categorical=tuple(data["categorical"]),
                   vocabularies=tuple(tuple(v) for v in data["vocabularies"]), numeric=tuple(data["numeric"]),
                   numeric_stats=tuple((float(a), float(b)) for a, b in data["numeric_stats"]),
                   embedding_dim=int(data["embedding_dim"]), hidden=tuple(int(h) for h in data["hidden"]))


@dataclass(frozen=True)
class LearnedFusion:
    """A trained gate with its spec; ``scores`` works on pandas frames (offline, or per Spark
    partition in ``pipeline score``)."""

    spec: GateSpec
    gate: FusionGate

    @classmethod
    def build(cls, spec: GateSpec) -> "LearnedFusion":
        gate = FusionGate([1 + len(v) for v in spec.vocabularies], len(spec.numeric), len(spec.terms),
                          spec.embedding_dim, spec.hidden)
        return cls(spec=spec, gate=gate)

    def context(self, frame: pd.DataFrame) -> tuple[Tensor, Tensor]:
        """Encoded context of the rows: ``(cat [N, F] long, num [N, N_num] float)``."""
        check_columns({name: "fusion.learned" for name in (*self.spec.categorical, *self.spec.numeric)},
                      frame.columns)
        ids = [_category_ids(frame[name], vocabulary)
               for name, vocabulary in zip(self.spec.categorical, self.spec.vocabularies)]
        standardized = [np.nan_to_num((pd.to_numeric(frame[name]).to_numpy(np.float64, na_value=np.nan) - mean) / std)
                        for name, (mean, std) in zip(self.spec.numeric, self.spec.numeric_stats)]
        cat = torch.as_tensor(np.stack(ids, axis=1) if ids else np.zeros((len(frame), 0)), dtype=torch.long)
        num = torch.as_tensor(np.stack(standardized, axis=1) if standardized else np.zeros((len(frame), 0)),
                              dtype=torch.float32)
        return cat, num

    def normalised_terms(self, terms: Mapping[str, np.ndarray]) -> Tensor:
        """[N, T] float32 terms, each divided by its training mean."""
        matrix = np.column_stack([terms[t] for t in self.spec.terms]) / np.asarray(self.spec.term_scales)
        return torch.as_tensor(matrix, dtype=torch.float32)

    @torch.no_grad()
    def weights(self, frame: pd.DataFrame) -> np.ndarray:
        """[N, T] mix of each row over ``spec.terms`` (what the gate chose)."""
        self.gate.eval()
        mix, _ = self.gate(*self.context(frame))
        return mix.double().numpy()

    @torch.no_grad()
    def scores(self, frame: pd.DataFrame, terms: Mapping[str, np.ndarray]) -> np.ndarray:
        """[N] float64 fused scores of the rows of ``frame`` with their ``terms`` (``term_arrays``)."""
        self.gate.eval()
        return self.gate.score(*self.context(frame), self.normalised_terms(terms)).double().numpy()

    def save(self, directory: str) -> None:
        """Writes ``gate.pt`` (a state dict) and ``gate.json`` (the spec)."""
        os.makedirs(directory, exist_ok=True)
        torch.save(self.gate.state_dict(), os.path.join(directory, "gate.pt"))
        with open(os.path.join(directory, "gate.json"), "w", encoding="utf-8") as fh:
            fh.write(self.spec.to_json())

    @classmethod
    def load(cls, directory: str) -> "LearnedFusion":
        """Rebuilds a saved gate (weights loaded with ``weights_only=True``)."""
        if not os.path.exists(os.path.join(directory, "gate.pt")):
            raise PipelineError(f"no learned fusion gate at {directory}")
        with open(os.path.join(directory, "gate.json"), encoding="utf-8") as fh:
            fusion = cls.build(GateSpec.from_json(fh.read()))
        fusion.gate.load_state_dict(torch.load(os.path.join(directory, "gate.pt"), weights_only=True))
        fusion.gate.eval()
        return fusion


def train_learned(frame: pd.DataFrame, conf: FusionConf) -> tuple[LearnedFusion, list[float]]:
    """Trains the gate on a labelled day to rank each request's items by realized gain.

    The loss is listwise: per request, the cross-entropy between the softmax of its rows' scores
    and its rows' shares of the request's gain (``fusion.gain``), weighted by that gain, i.e.
    ``-sum_i gain_i * log softmax_request(score)_i / sum_i gain_i``: each unit of gain votes for
    the row that earned it, the same weighting as the value-weighted NDCG. Deterministic under
    ``fusion.learned.seed``.

    Args:
        frame: one row per exposure: ``request_id``, the prediction (and value) columns of
            ``fusion.terms``, the context columns, ``click``, ``conversion``, ``conversion_value``.
        conf: the fusion section.

    Returns:
        The trained fusion and the mean loss of each epoch.
    """
    learned = conf.learned
    if not (learned.categorical or learned.numeric):
        raise PipelineError("fusion.learned: needs a categorical or numeric context column")
    check_columns({"request_id": "train_learned", **{name: "train_learned" for name in LABELS},
                   **{name: "fusion.learned" for name in (*learned.categorical, *learned.numeric)}}, frame.columns)
    terms = term_arrays(conf, frame, listed_terms(conf))
    torch.manual_seed(learned.seed)
    fusion = LearnedFusion.build(_fit_spec(frame, terms, learned))
    gains = business.gain(*(pd.to_numeric(frame[name]).to_numpy(np.float64) for name in LABELS), conf.gain)
    slots = _request_slots(business.request_codes(frame["request_id"].to_numpy()))
    history = _fit_gate(fusion.gate, *fusion.context(frame), fusion.normalised_terms(terms),
                        torch.as_tensor(gains, dtype=torch.float32), slots, learned)
    return fusion, history


def _fit_spec(frame: pd.DataFrame, terms: Mapping[str, np.ndarray], learned: LearnedConf) -> GateSpec:
    """Term scales, vocabularies and numeric statistics of the training day."""
    scales = np.column_stack(list(terms.values())).mean(axis=0)  # [T]
    scales[~(scales > 0)] = 1.0  # an all-zero term keeps its raw units
    numeric_stats = []
    for name in learned.numeric:
        values = pd.to_numeric(frame[name]).to_numpy(np.float64, na_value=np.nan)
        mean, std = np.nanmean(values), np.nanstd(values)
        numeric_stats.append((float(np.nan_to_num(mean)), float(std) if std > 0 else 1.0))
    return GateSpec(terms=tuple(terms), term_scales=tuple(float(s) for s in scales),
                    categorical=learned.categorical,
                    vocabularies=tuple(_vocabulary(frame[name]) for name in learned.categorical),
                    numeric=learned.numeric, numeric_stats=tuple(numeric_stats),
                    embedding_dim=learned.embedding_dim, hidden=learned.hidden)


def _fit_gate(gate: FusionGate, cat: Tensor, num: Tensor, normalised: Tensor, gains: Tensor, slots: Tensor,
              learned: LearnedConf) -> list[float]:
    """Adam over shuffled batches of requests; returns the mean loss of each epoch.

    Args:
        cat: [N, F]; num: [N, N_num]; normalised: [N, T] terms; gains: [N]; slots: [R, L] row
            indices of each request, -1 for padding.
    """
    slots = slots[(gains[slots.clamp_min(0)] * (slots >= 0)).sum(dim=1) > 0]  # requests with no gain teach no order
    optimizer = torch.optim.Adam(gate.parameters(), lr=learned.learning_rate)
    generator = torch.Generator().manual_seed(learned.seed)
    history = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of a few thousand rows: thread hand-offs cost more than they save
    try:
        gate.train()
        for _ in range(learned.epochs):
            losses = []
            for batch in torch.randperm(len(slots), generator=generator).split(learned.batch_requests):
                rows = slots[batch]  # [Rb, L]
                valid = rows >= 0
                flat = rows.clamp_min(0).flatten()  # [Rb * L]
                scores = gate.score(cat[flat], num[flat], normalised[flat]).view(rows.shape)  # [Rb, L]
                loss = _listwise_loss(scores, gains[flat].view(rows.shape) * valid, valid)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            history.append(float(np.mean(losses)) if losses else float("nan"))
    finally:
        torch.set_num_threads(threads)
        gate.eval()
    return history


def _listwise_loss(scores: Tensor, gains: Tensor, valid: Tensor) -> Tensor:
    """Gain-weighted listwise cross-entropy ``-sum gain * log softmax_request(score) / sum gain``.

    Args:
        scores: [R, L]; gains: [R, L] >= 0 (0 at padding), positive in total; valid: [R, L] bool.
    """
    log_probs = torch.log_softmax(scores.masked_fill(~valid, float("-inf")), dim=1)  # [R, L]
    return -(gains * log_probs.masked_fill(~valid, 0.0)).sum() / gains.sum()


def _request_slots(codes: np.ndarray) -> Tensor:
    """[R, L] row indices of each request's rows (input order), -1 after its last; L is the
    largest request."""
    positions = business.ranks_within_requests(codes, np.zeros(len(codes)))  # ties keep input order
    slots = np.full((int(codes.max()) + 1, int(positions.max()) + 1), -1, dtype=np.int64)
    slots[codes, positions] = np.arange(len(codes))
    return torch.as_tensor(slots)


def _vocabulary(values: pd.Series) -> tuple[str, ...]:
    """Distinct non-null values as text, sorted (ids do not depend on row order)."""
    return tuple(sorted(values.dropna().astype(str).unique()))


def _category_ids(values: pd.Series, vocabulary: Sequence[str]) -> np.ndarray:
    """[N] ids: i + 1 for ``vocabulary[i]``, 0 for unknown or missing values."""
    return pd.Categorical(as_text(values), categories=list(vocabulary)).codes.astype(np.int64) + 1
