"""Pure transforms from the public Ali-CCP files to the ``samples`` and ``quarantine`` layouts.

The files (one pair per split, ``train`` and ``test``), one record per line, no header:

    sample_skeleton_<split>.csv   sample_id,click,conversion,common_feature_index,feature_num,feature_list
    common_features_<split>.csv   common_feature_index,feature_num,feature_list

``feature_list`` holds ``feature_num`` features separated by ``\\x01``; a feature is
``field_id\\x02feature_id\\x03value`` (``value`` a float: 1.0 for a plain categorical, a count
weight for the ``*_14`` behaviour fields). A sample's user fields are in the common-features line
with its ``common_feature_index``; its ad and context fields are in its own line.

Mapping to ``samples`` (one row per skeleton line, ``impression_id`` ``aliccp-<split>-<sample_id>``):
    - the 23 fields of the ESMM paper become string columns ``f_<field>`` holding the feature id;
      a field with several features keeps the first in the line (the ``*_14`` behaviour
      histories, up to tens of ids, are reduced to one; keeping them all would copy each history
      into every sample of its request and give near-unique categorical values); the feature
      values are not kept;
    - ``user_id`` is field 101 (user ID), ``item_id`` field 205 (item ID), ``request_id`` the
      ``common_feature_index`` (the user-side context the samples of a request share);
    - ``click`` and ``conversion`` as given, except that ``conversion`` counts only on a click
      (``conversion`` implies ``click`` in the samples contract); a line with conversion 1 and
      click 0 becomes conversion 0 and is counted as an anomaly;
    - ``conversion_value`` 0.0: Ali-CCP has no order amounts, and none is invented;
    - the data has no timestamps: ``position``, ``exposure_ts`` and ``click_ts`` are NULL, every
      partition is final, and ``dt`` is synthetic (see ``SplitDays``).

Lines that break the format are rejected with reason ``malformed``; a sample whose user (field
101, including an unknown ``common_feature_index``) or item (field 205) is absent with
``missing_user_id`` / ``missing_item_id``. Rejected lines keep their text for ``quarantine``.

Parsing is a few regular-expression scans per line (no arrays of features, no lambdas): the
full data has about 85 million lines, some with hundreds of features.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipeline.config import FeaturesConf
from pipeline.errors import PipelineError
from pipeline.logs import schema
from pipeline.tables import QUARANTINE_SCHEMA, feature_columns, samples_schema

SPLITS = ("train", "test")
USER_FIELDS = ("101", "109_14", "110_14", "127_14", "150_14", "121", "122", "124", "125", "126", "127",
               "128", "129")
AD_FIELDS = ("205", "206", "207", "210", "216", "508", "509", "702", "853", "301")
FIELDS = USER_FIELDS + AD_FIELDS
USER_ID_FIELD, ITEM_ID_FIELD = "101", "205"

FIELD_SEP, ID_SEP, VALUE_SEP = "\x01", "\x02", "\x03"
SKELETON_COLUMNS, COMMON_COLUMNS = 6, 3

_TEXT = f"[^{FIELD_SEP}{ID_SEP}{VALUE_SEP}]+"
_FLOAT = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
# One whole, well-formed feature, with the separator before it (none for the first).
_FEATURE = f"(?:^|{FIELD_SEP}){_TEXT}{ID_SEP}{_TEXT}{VALUE_SEP}{_FLOAT}(?={FIELD_SEP}|$)"

# Columns of the intermediate frames.
SPLIT, RAW, REASON = "split", "raw", "reason"
SAMPLE_ID, CLICK, CONVERSION, COMMON_INDEX = "sample_id", "click", "raw_conversion", "common_feature_index"


def feature_column(field: str) -> str:
    """The ``samples`` column of Ali-CCP field ``field`` (``205`` -> ``f_205``)."""
    return f"f_{field}"


# The feature columns an import can fill: the ids, and the 23 fields (f_101 and f_205 repeat
# user_id and item_id so that a feature list can name every field the same way).
AVAILABLE_FEATURES = ("user_id", "item_id", *[feature_column(f) for f in FIELDS])


@dataclass(frozen=True)
class SplitDays:
    """Synthetic ``dt`` dates: Ali-CCP has no timestamps.

    The train file's lines spread over ``train_days`` days from ``start``, the test file's over
    the ``test_days`` days after those, by a hash of ``sample_id`` (stable, so a re-import puts
    every line on the same day). With the defaults, ``pipeline train --start <start> --end
    <start + 8 days>`` trains on 9/10 of the train file, validates on the last tenth and reports
    on the test file.
    """

    start: dt.date = dt.date(2018, 1, 1)
    train_days: int = 10
    test_days: int = 1

    def __post_init__(self) -> None:
        if self.train_days < 1 or self.test_days < 1:
            raise PipelineError(f"Ali-CCP train_days and test_days must be >= 1, got "
                                f"{self.train_days} and {self.test_days}")

    def first(self, split: str) -> dt.date:
        return self.start if split == "train" else self.start + dt.timedelta(days=self.train_days)

    def count(self, split: str) -> int:
        return self.train_days if split == "train" else self.test_days

    def dates(self, split: str) -> list[dt.date]:
        """Every date the lines of ``split`` can land on."""
        return [self.first(split) + dt.timedelta(days=i) for i in range(self.count(split))]

    def owned(self, splits: tuple[str, ...]) -> list[dt.date]:
        """The ``dt`` partitions an import of ``splits`` replaces."""
        return sorted(d for split in splits for d in self.dates(split))

    def day_of(self, split: Column, key: Column) -> Column:
        """The DATE of a line of ``split`` (a column holding ``train`` or ``test``) with ``key``."""
        def day(name: str) -> Column:
            offset = F.pmod(F.xxhash64(key), F.lit(self.count(name))).cast("int")
            return F.date_add(F.lit(self.first(name)), offset)

        return F.when(split == "train", day("train")).otherwise(day("test"))


def feature_count(feature_list: Column) -> Column:
    """How many features ``feature_list`` holds (0 for an empty list)."""
    return F.when(feature_list == "", F.lit(0)).otherwise(F.size(F.split(feature_list, FIELD_SEP, -1)))


def is_feature_list(feature_list: Column, feature_num: Column) -> Column:
    """True when ``feature_list`` is ``feature_num`` well-formed features.

    Deleting every well-formed feature (with its separator) leaves nothing exactly when all of
    them are: a scan, where one pattern for the whole list would recurse once per feature. A
    leading separator (an empty first feature) is the one flaw the deletion would not leave.
    """
    leftover = F.regexp_replace(feature_list, _FEATURE, "")
    return ((leftover == "") & ~feature_list.startswith(FIELD_SEP)
            & (feature_num.try_cast("int") == feature_count(feature_list)))


def first_id(feature_list: Column, field: str) -> Column:
    """The feature id of the first feature of ``field`` (digits and ``_``, one of ``FIELDS``) in
    ``feature_list``; NULL when absent.

    The match is the id alone (the field and separators are look-arounds), so one scan gives
    the id or NULL; ``regexp_extract`` gives "" for absent and would need a second scan.
    """
    pattern = f"(?<=^{field}{ID_SEP}|{FIELD_SEP}{field}{ID_SEP}){_TEXT}(?={VALUE_SEP})"
    return F.regexp_substr(feature_list, F.lit(pattern))


def split_line(lines: DataFrame, split: Column) -> DataFrame:
    """``split``, the raw ``value`` and its comma-separated ``parts``: a step of its own so that
    the split is computed once per line (Spark does not inline it into every later use)."""
    return lines.select(split.alias(SPLIT), "value", F.split(F.col("value"), ",", -1).alias("parts"))


def parse_skeleton(lines: DataFrame, split: Column, days: SplitDays) -> DataFrame:
    """One row per skeleton line, ``reason`` ``malformed`` or NULL.

    Args:
        lines: the file's lines (``spark.read.text``: one column ``value``).
        split: ``train`` or ``test`` for each line.
        days: the synthetic dates.

    Returns:
        ``split, sample_id, click, raw_conversion, common_feature_index, dt, raw, reason`` and
        ``f_<field>`` for each of ``AD_FIELDS``.
    """
    parts = F.col("parts")
    sample_id, click, conversion, index, feature_num, feature_list = (F.get(parts, i) for i in range(6))
    is_well_formed = ((F.size(parts) == SKELETON_COLUMNS) & (sample_id != "") & click.isin("0", "1")
                      & conversion.isin("0", "1") & (index != "") & is_feature_list(feature_list, feature_num))
    return split_line(lines, split).select(
        F.col(SPLIT),
        sample_id.alias(SAMPLE_ID),
        click.try_cast("int").alias(CLICK),
        conversion.try_cast("int").alias(CONVERSION),
        index.alias(COMMON_INDEX),
        # A malformed line lands on a date of its split too (by its first column).
        days.day_of(F.col(SPLIT), sample_id).alias("dt"),
        # Kept for every line until the join decides which are rejected (classify_samples).
        F.col("value").alias(RAW),
        F.when(~is_well_formed, F.lit(schema.MALFORMED)).alias(REASON),
        # Read on every line: a malformed one is rejected whatever its fields say.
        *[first_id(feature_list, field).alias(feature_column(field)) for field in AD_FIELDS],
    )


def parse_common_features(lines: DataFrame, split: Column, days: SplitDays) -> DataFrame:
    """One row per common-features line, ``reason`` ``malformed`` or NULL.

    Returns:
        ``split, common_feature_index, dt, raw, reason`` and ``f_<field>`` for each of
        ``USER_FIELDS``; ``raw`` only on a malformed line.
    """
    parts = F.col("parts")
    index, feature_num, feature_list = (F.get(parts, i) for i in range(3))
    is_well_formed = ((F.size(parts) == COMMON_COLUMNS) & (index != "") & is_feature_list(feature_list, feature_num))
    return split_line(lines, split).select(
        F.col(SPLIT),
        index.alias(COMMON_INDEX),
        days.day_of(F.col(SPLIT), index).alias("dt"),
        # Only a rejected line's text is kept: the rest would only fill memory and shuffles.
        F.when(~is_well_formed, F.col("value")).alias(RAW),
        F.when(~is_well_formed, F.lit(schema.MALFORMED)).alias(REASON),
        *[first_id(feature_list, field).alias(feature_column(field)) for field in USER_FIELDS],
    )


def unique_common_features(common: DataFrame) -> DataFrame:
    """One row per well-formed ``(split, common_feature_index)``: a repeated index would
    otherwise multiply its samples in the join. The smallest set of user fields wins (any rule
    would do for copies of one line; this one is deterministic)."""
    user_columns = [feature_column(field) for field in USER_FIELDS]
    return (common.where(F.col(REASON).isNull())
            .groupBy(SPLIT, COMMON_INDEX)
            .agg(F.min(F.struct(*user_columns)).alias("user"))
            .select(SPLIT, COMMON_INDEX, *[F.col(f"user.{name}").alias(name) for name in user_columns]))


def classify_samples(skeleton: DataFrame, common: DataFrame) -> DataFrame:
    """Joins each skeleton line to its user fields and sets its final ``reason``.

    Args:
        skeleton: ``parse_skeleton`` output.
        common: ``unique_common_features`` output (one row per index).

    Returns:
        ``split, sample_id, click, raw_conversion, common_feature_index, dt, raw, reason`` and one
        ``f_<field>`` column per Ali-CCP field, in ``FIELDS`` order; ``raw`` only when rejected.
    """
    joined = skeleton.alias("s").join(
        common.alias("c"),
        on=(F.col(f"s.{SPLIT}") == F.col(f"c.{SPLIT}")) & (F.col(f"s.{COMMON_INDEX}") == F.col(f"c.{COMMON_INDEX}")),
        how="left")
    is_missing_user = F.col(f"c.{feature_column(USER_ID_FIELD)}").isNull()
    is_missing_item = F.col(f"s.{feature_column(ITEM_ID_FIELD)}").isNull()
    reason = (F.when(F.col(f"s.{REASON}").isNotNull(), F.col(f"s.{REASON}"))
              .when(is_missing_user, F.lit(schema.missing("user_id")))
              .when(is_missing_item, F.lit(schema.missing("item_id"))))
    return joined.select(
        *[F.col(f"s.{name}").alias(name) for name in (SPLIT, SAMPLE_ID, CLICK, CONVERSION, COMMON_INDEX, "dt")],
        # The text of an accepted line is dropped here, before anything caches the rows.
        F.when(reason.isNotNull(), F.col(f"s.{RAW}")).alias(RAW),
        reason.alias(REASON),
        *[F.col(f"{'c' if field in USER_FIELDS else 's'}.{feature_column(field)}").alias(feature_column(field))
          for field in FIELDS],
    )


def is_conversion_without_click() -> Column:
    """A line whose conversion flag is set although it was not clicked (not in the contract)."""
    return (F.col(CONVERSION) == 1) & (F.col(CLICK) == 0)


def to_samples(classified: DataFrame, *, features: FeaturesConf, run_id: str) -> DataFrame:
    """The accepted lines in the ``samples`` layout (``samples_schema(features)``, in its order).

    Args:
        classified: ``classify_samples`` output.
        features: the configured features; each must be one of ``AVAILABLE_FEATURES``.
        run_id: the import's run id.
    """
    converted = (F.col(CLICK) == 1) & (F.col(CONVERSION) == 1)
    values = {
        "impression_id": F.concat(F.lit("aliccp-"), F.col(SPLIT), F.lit("-"), F.col(SAMPLE_ID)),
        "request_id": F.col(COMMON_INDEX),
        "user_id": F.col(feature_column(USER_ID_FIELD)),
        "item_id": F.col(feature_column(ITEM_ID_FIELD)),
        "position": F.lit(None),
        "exposure_ts": F.lit(None),
        "click": F.col(CLICK),
        "click_ts": F.lit(None),
        "conversion": converted.cast("int"),
        "conversion_value": F.lit(0.0),
        "labels_final": F.lit(True),  # no label can still arrive for a finished dataset
        "run_id": F.lit(run_id),
        "dt": F.col("dt"),
        **{name: F.col(name) for name, _ in feature_columns(features)},
    }
    return classified.where(F.col(REASON).isNull()).select(
        *[values[f.name].cast(f.dataType).alias(f.name) for f in samples_schema(features).fields])


def to_quarantine(classified: DataFrame, common: DataFrame, *, run_id: str) -> DataFrame:
    """Rejected lines of both files in the ``quarantine`` layout; ``source`` names the file
    without its extension (``sample_skeleton_train``, ``common_features_test``)."""
    def rejected(frame: DataFrame, file: str) -> DataFrame:
        return frame.where(F.col(REASON).isNotNull()).select(
            F.concat(F.lit(f"{file}_"), F.col(SPLIT)).alias("source"), F.col(REASON).alias("reason"),
            F.col(RAW).alias("raw"), F.lit(run_id).alias("run_id"), F.col("dt"))

    both = rejected(classified, "sample_skeleton").unionByName(rejected(common, "common_features"))
    return both.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in QUARANTINE_SCHEMA.fields])
