"""Batch inference in the Python workers: a registered model (and the learned gate) over Arrow
batches of encoded rows, loaded once per worker (``mapInArrow``).

Shape notation: B rows of an inference batch, F categorical features, N numeric features.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import torch
from pyspark.sql import DataFrame
from pyspark.sql.types import DoubleType, StructField, StructType

from pipeline.features.encoders import encoded_batch
from pipeline.scoring import fusion
from pipeline.scoring.conf import FusionConf
from pipeline.scoring.learned import LearnedFusion
from pipeline.training.artifacts import LoadedModel, load_artifact, predict_arrays


@dataclass(frozen=True)
class InferencePlan:
    """What each Python worker needs; plain values, so that it pickles.

    Args:
        artifact_uri: the model directory (loaded once per worker).
        outputs: the prediction columns to emit (``model_outputs``).
        passthrough: input columns copied to the output.
        batch_size: rows per forward pass.
        gate_dir: the learned gate's directory, when the strategy is learned.
        fusion: ``to_dict`` of the fusion section (the gate's terms need it).
    """

    artifact_uri: str
    outputs: tuple[str, ...]
    passthrough: tuple[str, ...]
    batch_size: int
    gate_dir: Optional[str] = None
    fusion: Optional[dict] = None


# Python workers are reused across tasks: one load per worker and artifact, not one per task.
_MODELS: dict[str, LoadedModel] = {}
_GATES: dict[str, LearnedFusion] = {}


def cached_model(artifact_uri: str) -> LoadedModel:
    """The artifact at ``artifact_uri``, loaded once per process."""
    if artifact_uri not in _MODELS:
        _MODELS[artifact_uri] = load_artifact(artifact_uri)
    return _MODELS[artifact_uri]


def cached_gate(directory: str) -> LearnedFusion:
    """The learned gate at ``directory``, loaded once per process."""
    if directory not in _GATES:
        _GATES[directory] = LearnedFusion.load(directory)
    return _GATES[directory]


def predict_batches(plan: InferencePlan, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: the passthrough columns, the model's outputs and, for the learned
    strategy, ``score``."""
    # Spark runs one worker per core: more torch threads per worker would oversubscribe them.
    torch.set_num_threads(1)
    model = cached_model(plan.artifact_uri)
    gate = cached_gate(plan.gate_dir) if plan.gate_dir else None
    conf = FusionConf.from_dict(plan.fusion) if gate is not None else None
    for batch in batches:
        if batch.num_rows == 0:
            continue
        predictions = predict_arrays(model, *encoded_batch(batch, model.encoders), plan.batch_size)
        columns = {name: batch.column(name) for name in plan.passthrough}
        columns.update({name: pa.array(predictions[name], type=pa.float64()) for name in plan.outputs})
        if gate is not None:
            frame = pa.RecordBatch.from_pydict(columns).to_pandas()
            scores = gate.scores(frame, fusion.term_arrays(conf, frame, gate_terms(gate)))
            columns["score"] = pa.array(np.asarray(scores, dtype=np.float64))
        yield pa.RecordBatch.from_pydict(columns)


def predict_rows(prepared: DataFrame, plan: InferencePlan) -> DataFrame:
    """The model (and, with ``plan.gate_dir``, the learned gate) over rows, in the workers.

    Args:
        prepared: ``encode_for_lookup``'s output: the ``plan.passthrough`` columns and the features.
        plan: what each worker needs.

    Returns:
        ``plan.passthrough``, then ``plan.outputs`` (DOUBLE), then ``score`` (DOUBLE) with a gate.
    """
    schema = StructType([*[prepared.schema[name] for name in plan.passthrough],
                         *[StructField(name, DoubleType()) for name in plan.outputs],
                         *([StructField("score", DoubleType())] if plan.gate_dir else [])])
    return spread(prepared).mapInArrow(functools.partial(predict_batches, plan), schema)


def spread(rows: DataFrame) -> DataFrame:
    """``rows``, spread round-robin over one partition per core when they come from fewer files
    than cores: a Parquet row group is read by one task, so a day written as one file would run
    the network on one core while the others wait."""
    cores = rows.sparkSession.sparkContext.defaultParallelism
    return rows if len(rows.inputFiles()) >= cores else rows.repartition(cores)


def gate_terms(gate: LearnedFusion) -> dict[str, str]:
    """The terms a trained gate mixes, each with the conf key that chose them."""
    return {t: "fusion.terms" for t in gate.spec.terms}
