import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from pipeline.config import load_config
import numpy as np

from pipeline.features.encoders import (CAT_PREFIX, NUM_PREFIX, Encoders, encode, encode_for_lookup, encode_frame,
                                        encoded_batch, fit_encoders)

D1, D2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)


@pytest.fixture(scope="module")
def rows(spark):
    data = [("a", "x", 1.0, D1), ("a", "x", 3.0, D1), ("a", "y", None, D1), ("b", "y", 7.0, D1),
            ("b", None, 1.0, D1), ("c", "z", 15.0, D1),
            ("a", "x", 1000.0, D2), ("d", "w", 1000.0, D2)]
    return spark.createDataFrame(data, "shop string, color string, price double, dt date")


def features(*extra):
    return load_config(None, ["features.categorical=[shop, color]", "features.numeric=[price]", *extra]).features


def test_vocabulary_is_frequency_ordered_with_min_count(rows):
    enc = fit_encoders(rows.where(F.col("dt") == D1), features("features.min_count=2"))
    assert enc.vocabularies == {"shop": ("a", "b"), "color": ("x", "y")}  # c, z: seen once
    assert enc.cardinalities == (3, 3)


def test_unseen_missing_and_rare_values_map_to_zero(rows):
    enc = fit_encoders(rows.where(F.col("dt") == D1), features("features.min_count=2"))
    encoded = {r["shop"] + str(r["color"]): (r["cat_shop"], r["cat_color"])
               for r in encode(rows, enc, keep=("shop", "color")).collect()}
    assert encoded["ax"] == (1, 1) and encoded["by"] == (2, 2)
    assert encoded["bNone"] == (2, 0)   # missing
    assert encoded["cz"] == (0, 0)      # rare in training
    assert encoded["dw"] == (0, 0)      # never seen in training


def test_numeric_stats_come_from_the_training_range_only(rows):
    import math

    enc = fit_encoders(rows.where(F.col("dt") == D1), features())
    logs = [math.log1p(v) for v in (1.0, 3.0, 7.0, 1.0, 15.0)]
    mean = sum(logs) / len(logs)
    std = math.sqrt(sum((v - mean) ** 2 for v in logs) / len(logs))
    assert enc.numeric_stats["price"] == pytest.approx((mean, std))  # D2's 1000s left out
    out = encode(rows.where(F.col("price").isNull()), enc).first()
    assert out["num_price"] == 0.0  # missing -> the mean


def test_hashing_option(rows):
    enc = fit_encoders(rows, features("features.hash_buckets.shop=16"))
    assert "shop" not in enc.vocabularies and enc.cardinality("shop") == 17
    ids = [r["cat_shop"] for r in encode(rows, enc).collect()]
    assert all(1 <= i <= 16 for i in ids)


def test_stored_encoders_reproduce_the_encoding_exactly(rows):
    enc = fit_encoders(rows.where(F.col("dt") == D1), features("features.hash_buckets.color=8"))
    again = Encoders.from_json(enc.to_json())
    assert again == enc
    assertDataFrameEqual(encode(rows, again, keep=("shop", "color", "price", "dt")),
                         encode(rows, enc, keep=("shop", "color", "price", "dt")))


def test_the_pandas_encoding_equals_the_spark_one(spark):
    # Text, an int column with nulls (pandas reads it as floats), numbers as text, hashed values
    # of every XXH64 length class (< 4, < 8, < 32 and >= 32 bytes, multi-byte UTF-8).
    long_text = "a value long enough for two 32-byte stripes of XXH64, é ü"
    data = [("a", 1, "x", 1.0), ("a", 2, "xyz1", 3.0), ("b", None, "seven-b", None), ("b", 2, long_text, -7.5),
            (None, 3, None, 1e6), ("c", 1, "δδδδδδδδδδδδδδδδ", 0.0), ("a", 40, "x", 2.0)]
    rows = spark.createDataFrame(data, "shop string, slot int, color string, price double")
    conf = load_config(None, ["features.categorical=[shop, slot, color]", "features.numeric=[price]",
                              "features.min_count=1", "features.hash_buckets.color=1000"]).features
    enc = fit_encoders(rows.limit(5), conf)
    spark_side = encode(rows, enc, keep=("shop", "slot", "color", "price")).toPandas()

    cat, num = encode_frame(spark_side[["shop", "slot", "color", "price"]], enc)

    np.testing.assert_array_equal(cat, spark_side[[f"{CAT_PREFIX}{n}" for n in enc.categorical]].to_numpy())
    np.testing.assert_array_equal(num, spark_side[[f"{NUM_PREFIX}{n}" for n in enc.numeric]].to_numpy())
    assert spark_side["slot"].dtype == float  # read back as ints: 1.0 is the value "1"
    assert ((cat[:, 1] > 0) == spark_side["slot"].isin([1, 2, 3])).all()  # null and the unseen 40: unknown


def test_the_lookup_in_the_workers_equals_the_spark_encoding(spark):
    # pipeline score: Spark hashes and standardizes, the Python workers look the vocabularies up.
    data = [("a", 1, "x", 1.0), ("a", 2, "xyz1", 3.0), ("b", None, "seven-b", None), (None, 40, None, -2.0),
            ("zz", 3, "δδ", 0.0)]
    rows = spark.createDataFrame(data, "shop string, slot int, color string, price double")
    conf = load_config(None, ["features.categorical=[shop, slot, color]", "features.numeric=[price]",
                              "features.min_count=1", "features.hash_buckets.color=1000"]).features
    enc = fit_encoders(rows.limit(3), conf)
    expected = encode(rows, enc, keep=("shop",)).orderBy("shop", "num_price").toPandas()

    prepared = encode_for_lookup(rows, enc, keep=("shop",)).orderBy("shop", "num_price").toArrow()
    cat, num = encoded_batch(prepared.combine_chunks().to_batches()[0], enc)

    np.testing.assert_array_equal(cat, expected[[f"{CAT_PREFIX}{n}" for n in enc.categorical]].to_numpy())
    np.testing.assert_array_equal(num, expected[[f"{NUM_PREFIX}{n}" for n in enc.numeric]].to_numpy())
    assert (cat[:, 0] == 0).sum() == 2  # null and the unseen "zz"
