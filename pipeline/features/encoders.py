"""Feature encoding, fitted in Spark on the training range only and stored with the model.

Categorical features become integer ids: a frequency-ordered vocabulary (values seen at least
``features.min_count`` times get 1, 2, ... by descending count, ties by value) or, for features in
``features.hash_buckets``, ``1 + xxhash64(value) mod buckets``. Index 0 is unknown, missing or rare.
Numeric features become ``(signed_log1p(x) - mean) / std`` with the training range's mean and std;
missing values become 0.0 (the mean).

``encode`` is the Spark form (training); ``encode_frame`` the same encoding of a pandas frame (the
MLflow pyfunc model, ``pipeline/tracking.py``); ``encode_for_lookup`` with ``encoded_batch`` the
same again split between Spark and the Python workers (``pipeline score``: the vocabularies are
looked up in the workers' Arrow batches instead of one broadcast join per feature). All three are
checked equal in the tests.
"""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.config import FeaturesConf

UNKNOWN = 0
CAT_PREFIX, NUM_PREFIX = "cat_", "num_"


@dataclass(frozen=True)
class Encoders:
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    vocabularies: dict[str, tuple[str, ...]]       # feature -> values; value i has index i + 1
    hash_buckets: dict[str, int]                   # feature -> buckets (instead of a vocabulary)
    numeric_stats: dict[str, tuple[float, float]]  # feature -> (mean, std) of signed log1p

    def cardinality(self, feature: str) -> int:
        """Embedding rows the feature needs, index 0 included."""
        if feature in self.hash_buckets:
            return 1 + self.hash_buckets[feature]
        return 1 + len(self.vocabularies[feature])

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(self.cardinality(f) for f in self.categorical)

    @property
    def cat_columns(self) -> tuple[str, ...]:
        """The encoded categorical columns (``cat_<feature>``), in the model's field order."""
        return tuple(f"{CAT_PREFIX}{n}" for n in self.categorical)

    @property
    def num_columns(self) -> tuple[str, ...]:
        """The encoded numeric columns (``num_<feature>``), in the model's order."""
        return tuple(f"{NUM_PREFIX}{n}" for n in self.numeric)

    @functools.cached_property
    def vocabulary_arrays(self) -> dict[str, pa.Array]:
        """feature -> its vocabulary as an Arrow string array (built once per object)."""
        return {name: pa.array(values, type=pa.string()) for name, values in self.vocabularies.items()}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Encoders":
        data = json.loads(text)
        return cls(categorical=tuple(data["categorical"]), numeric=tuple(data["numeric"]),
                   vocabularies={k: tuple(v) for k, v in data["vocabularies"].items()},
                   hash_buckets={k: int(v) for k, v in data["hash_buckets"].items()},
                   numeric_stats={k: (float(v[0]), float(v[1])) for k, v in data["numeric_stats"].items()})


def signed_log1p(column: Column) -> Column:
    """log1p of the magnitude, with the sign kept (prices are >= 0, but a feature may not be)."""
    return F.signum(column) * F.log1p(F.abs(column))


def fit_encoders(samples: DataFrame, features: FeaturesConf) -> Encoders:
    """Fits vocabularies and numeric statistics on ``samples`` (the training range only): one
    Spark job counts the values of every vocabulary feature, one more computes the statistics."""
    hashed = dict(features.hash_buckets)
    values: dict[str, list[str]] = {name: [] for name in features.categorical if name not in hashed}
    if values:
        pairs = samples.select(F.inline(F.array(*[
            F.struct(F.lit(name).alias("feature"), F.col(name).cast("string").alias("value")) for name in values])))
        counts = (pairs.where(F.col("value").isNotNull()).groupBy("feature", "value").count()
                  .where(F.col("count") >= features.min_count)
                  .orderBy(F.col("feature"), F.col("count").desc(), F.col("value")))
        for row in counts.collect():
            values[row["feature"]].append(row["value"])
    vocabularies = {name: tuple(vocabulary) for name, vocabulary in values.items()}
    stats = {}
    if features.numeric:
        row = samples.agg(*[agg for name in features.numeric for agg in (
            F.mean(signed_log1p(F.col(name))).alias(f"{name}__mean"),
            F.stddev_pop(signed_log1p(F.col(name))).alias(f"{name}__std"))]).first()
        for name in features.numeric:
            mean, std = row[f"{name}__mean"], row[f"{name}__std"]
            stats[name] = (float(mean or 0.0), float(std) if std else 1.0)
    return Encoders(categorical=tuple(features.categorical), numeric=tuple(features.numeric),
                    vocabularies=vocabularies, hash_buckets=hashed, numeric_stats=stats)


def hashed_index(value: Column, buckets: int) -> Column:
    """``1 + xxhash64(value) mod buckets`` (INT), ``UNKNOWN`` for null; ``value`` is text."""
    index = F.lit(1) + F.pmod(F.xxhash64(value), F.lit(buckets)).cast("int")
    return F.when(value.isNull(), UNKNOWN).otherwise(index)


def standardized(column: Column, stats: tuple[float, float]) -> Column:
    """``(signed_log1p(x) - mean) / std`` (FLOAT), 0.0 for null."""
    mean, std = stats
    return F.coalesce((signed_log1p(column.cast("double")) - F.lit(mean)) / F.lit(std), F.lit(0.0)).cast("float")


def encode(df: DataFrame, encoders: Encoders, keep: tuple[str, ...] = ()) -> DataFrame:
    """Adds ``cat_<feature>`` (INT, 0 = unknown) and ``num_<feature>`` (FLOAT) columns and keeps
    only those and the ``keep`` columns."""
    out = encode_for_lookup(df, encoders, keep=keep)
    for name in encoders.vocabularies:
        vocabulary = vocabulary_frame(df.sparkSession, name, encoders.vocabulary_arrays[name])
        out = (out.join(F.broadcast(vocabulary), on=F.col(f"{CAT_PREFIX}{name}") == F.col(f"{name}__value"), how="left")
               .withColumn(f"{CAT_PREFIX}{name}", F.coalesce(F.col(f"{name}__index"), F.lit(UNKNOWN)))
               .drop(f"{name}__value", f"{name}__index"))
    return out.select(*keep, *encoded_columns(encoders))


def vocabulary_frame(spark: SparkSession, name: str, vocabulary: pa.Array) -> DataFrame:
    """``<name>__value`` STRING, ``<name>__index`` INT (1, 2, ...): made from Arrow, so a
    vocabulary under ``spark.sql.execution.arrow.localRelationThreshold`` (48 MB) is a local
    relation in the plan, broadcast without a Spark job of its own (from a list of rows it was one
    job per vocabulary: measured, a 180,000-row training set of 8 vocabularies encoded in 1.1 s
    against 3.0 s)."""
    indexes = pa.array(np.arange(1, len(vocabulary) + 1, dtype=np.int32))
    return spark.createDataFrame(pa.table({f"{name}__value": vocabulary, f"{name}__index": indexes}))


def encode_for_lookup(df: DataFrame, encoders: Encoders, keep: tuple[str, ...] = ()) -> DataFrame:
    """``encode`` but for the vocabularies: a vocabulary feature's ``cat_<feature>`` is its text
    (STRING, null when missing), to be looked up by ``encoded_batch`` where the rows are."""
    def categorical(name: str) -> Column:
        text = F.col(name).cast("string")
        return hashed_index(text, encoders.hash_buckets[name]) if name in encoders.hash_buckets else text

    return df.select(*keep, *[categorical(name).alias(f"{CAT_PREFIX}{name}") for name in encoders.categorical],
                     *[standardized(F.col(name), encoders.numeric_stats[name]).alias(f"{NUM_PREFIX}{name}")
                       for name in encoders.numeric])


def encoded_columns(encoders: Encoders) -> list[str]:
    """The ``cat_*`` then ``num_*`` column names, in the encoders' order."""
    return [*encoders.cat_columns, *encoders.num_columns]


def encoded_arrays(frame: pd.DataFrame, encoders: Encoders) -> tuple[np.ndarray, np.ndarray]:
    """``(cat [N, F] int64, num [N, N_num] float32)`` from the ``encoded_columns`` of a frame."""
    cat = frame[list(encoders.cat_columns)].to_numpy(np.int64).reshape(len(frame), len(encoders.cat_columns))
    num = frame[list(encoders.num_columns)].to_numpy(np.float32).reshape(len(frame), len(encoders.num_columns))
    return np.ascontiguousarray(cat), np.ascontiguousarray(num)


def vocabulary_index(texts: pa.Array, vocabulary: pa.Array) -> np.ndarray:
    """[N] int64: each text's position in ``vocabulary`` plus one; ``UNKNOWN`` for null or unseen."""
    positions = pc.index_in(texts, value_set=vocabulary).fill_null(UNKNOWN - 1)
    return positions.to_numpy(zero_copy_only=False).astype(np.int64) + 1


def encoded_batch(batch: pa.RecordBatch, encoders: Encoders) -> tuple[np.ndarray, np.ndarray]:
    """The network's inputs from an Arrow batch of ``encode_for_lookup`` rows, equal to ``encode``'s.

    Returns:
        ``(cat [N, F] int64, num [N, N_num] float32)``.
    """
    cat = np.empty((batch.num_rows, len(encoders.categorical)), dtype=np.int64)
    for j, name in enumerate(encoders.categorical):
        column = batch.column(f"{CAT_PREFIX}{name}")
        cat[:, j] = (vocabulary_index(column, encoders.vocabulary_arrays[name]) if name in encoders.vocabularies
                     else column.to_numpy(zero_copy_only=False))
    num = np.empty((batch.num_rows, len(encoders.numeric)), dtype=np.float32)
    for j, name in enumerate(encoders.numeric):
        num[:, j] = batch.column(f"{NUM_PREFIX}{name}").to_numpy(zero_copy_only=False)
    return cat, num


# ---------------------------------------------------------------------------------------------
# The same encoding of a pandas frame


def encode_frame(frame: pd.DataFrame, encoders: Encoders) -> tuple[np.ndarray, np.ndarray]:
    """``encode`` of the raw feature columns of a pandas frame, as the network's inputs.

    Args:
        frame: N rows with every feature column of ``encoders`` (others are ignored).
        encoders: the model's encoders.

    Returns:
        ``(cat [N, F] int64, num [N, N_num] float32)``, equal to what ``encode`` gives in Spark.
    """
    cat = np.zeros((len(frame), len(encoders.categorical)), dtype=np.int64)
    for j, name in enumerate(encoders.categorical):
        text = spark_text(frame[name])
        if name in encoders.vocabularies:
            cat[:, j] = vocabulary_index(pa.array(text, type=pa.string()), encoders.vocabulary_arrays[name])
            continue
        known, buckets = text.notna(), encoders.hash_buckets[name]
        cat[known.to_numpy(), j] = text[known].map(lambda value: 1 + spark_xxhash64(value) % buckets).to_numpy(np.int64)
    num = np.zeros((len(frame), len(encoders.numeric)), dtype=np.float32)
    for j, name in enumerate(encoders.numeric):
        mean, std = encoders.numeric_stats[name]
        x = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64)  # text that is no number: null
        standardized = (np.sign(x) * np.log1p(np.abs(x)) - mean) / std
        num[:, j] = np.where(np.isnan(standardized), 0.0, standardized).astype(np.float32)
    return cat, num


def spark_text(values: pd.Series) -> pd.Series:
    """The values as Spark's ``cast("string")`` writes them; null stays null (``None``).

    Categorical features are text in ``samples`` except int columns such as ``position``; pandas
    reads an int column with nulls as floats, so whole floats are written as ints.
    """
    def text(value) -> object:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            return None
        if isinstance(value, (bool, np.bool_)):
            return "true" if value else "false"
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return str(int(value))
        if isinstance(value, (int, np.integer)):
            return str(int(value))
        return str(value)

    return values.astype(object).map(text)


_P1, _P2, _P3, _P4, _P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63,
                           0x27D4EB2F165667C5)
_MASK = (1 << 64) - 1
SPARK_HASH_SEED = 42  # what Spark's xxhash64 column function seeds with


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _MASK, 31) * _P1) & _MASK


def spark_xxhash64(value: str, seed: int = SPARK_HASH_SEED) -> int:
    """Spark's ``xxhash64(value)`` of a string (XXH64 of its UTF-8 bytes), as a signed 64-bit int."""
    data = value.encode("utf-8")
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _MASK, (seed + _P2) & _MASK, seed & _MASK, (seed - _P1) & _MASK]
        while i + 32 <= n:
            v = [_round(acc, int.from_bytes(data[i + 8 * k:i + 8 * k + 8], "little")) for k, acc in enumerate(v)]
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _MASK
        for acc in v:
            h = ((h ^ _round(0, acc)) * _P1 + _P4) & _MASK
    else:
        h = (seed + _P5) & _MASK
    h = (h + n) & _MASK
    while i + 8 <= n:
        h = (_rotl(h ^ _round(0, int.from_bytes(data[i:i + 8], "little")), 27) * _P1 + _P4) & _MASK
        i += 8
    if i + 4 <= n:
        h = (_rotl(h ^ ((int.from_bytes(data[i:i + 4], "little") * _P1) & _MASK), 23) * _P2 + _P3) & _MASK
        i += 4
    for byte in data[i:]:
        h = (_rotl(h ^ ((byte * _P5) & _MASK), 11) * _P1) & _MASK
    h = ((h ^ (h >> 33)) * _P2) & _MASK
    h = ((h ^ (h >> 29)) * _P3) & _MASK
    h ^= h >> 32
    return h - (1 << 64) if h >= 1 << 63 else h
