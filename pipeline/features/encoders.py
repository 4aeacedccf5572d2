"""Feature encoding, fitted in Spark on the training range only and stored with the model.

Categorical features become integer ids: a frequency-ordered vocabulary (values seen at least
``features.min_count`` times get 1, 2, ... by descending count, ties by value) or, for features in
``features.hash_buckets``, ``1 + xxhash64(value) mod buckets``. Index 0 is unknown, missing or rare.
Numeric features become ``(signed_log1p(x) - mean) / std`` with the training range's mean and std;
missing values become 0.0 (the mean).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from pyspark.sql import Column, DataFrame
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
    """Fits vocabularies and numeric statistics on ``samples`` (the training range only)."""
    hashed = {name: int(buckets) for name, buckets in features.hash_buckets.items()}
    vocabularies = {}
    for name in features.categorical:
        if name in hashed:
            continue
        counts = (samples.select(F.col(name).cast("string").alias("value")).where(F.col("value").isNotNull())
                  .groupBy("value").count().where(F.col("count") >= features.min_count)
                  .orderBy(F.col("count").desc(), F.col("value")))
        vocabularies[name] = tuple(row["value"] for row in counts.collect())
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


def encode(df: DataFrame, encoders: Encoders, keep: tuple[str, ...] = ()) -> DataFrame:
    """Adds ``cat_<feature>`` (INT, 0 = unknown) and ``num_<feature>`` (FLOAT) columns and keeps
    only those and the ``keep`` columns."""
    spark = df.sparkSession
    out = df
    for name in encoders.categorical:
        value = F.col(name).cast("string")
        if name in encoders.hash_buckets:
            index = F.lit(1) + F.pmod(F.xxhash64(value), F.lit(encoders.hash_buckets[name])).cast("int")
            out = out.withColumn(f"{CAT_PREFIX}{name}", F.when(value.isNull(), UNKNOWN).otherwise(index))
            continue
        vocabulary = spark.createDataFrame(
            [(v, i + 1) for i, v in enumerate(encoders.vocabularies[name])],
            f"`{name}__value` string, `{CAT_PREFIX}{name}` int")
        out = (out.join(F.broadcast(vocabulary), on=value == F.col(f"{name}__value"), how="left")
               .drop(f"{name}__value")
               .withColumn(f"{CAT_PREFIX}{name}", F.coalesce(F.col(f"{CAT_PREFIX}{name}"), F.lit(UNKNOWN))))
    for name in encoders.numeric:
        mean, std = encoders.numeric_stats[name]
        standardized = (signed_log1p(F.col(name).cast("double")) - F.lit(mean)) / F.lit(std)
        out = out.withColumn(f"{NUM_PREFIX}{name}", F.coalesce(standardized, F.lit(0.0)).cast("float"))
    encoded = [f"{CAT_PREFIX}{n}" for n in encoders.categorical] + [f"{NUM_PREFIX}{n}" for n in encoders.numeric]
    return out.select(*keep, *encoded)
