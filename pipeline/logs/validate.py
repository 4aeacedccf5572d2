"""Record-level checks of raw records: timestamp parsing, reason codes, de-duplication.

All pure column expressions and DataFrame transforms (no I/O, no Python UDFs).
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipeline.logs import schema

EVENT_TS = "event_ts"
REASON = "reason"
IS_DUPLICATE = "is_duplicate"


def parse_ts(ts: Column) -> Column:
    """``ts`` text to TIMESTAMP: epoch milliseconds (digits) or ISO-8601 (``Z`` or an offset);
    NULL when it is neither."""
    is_epoch_ms = ts.rlike(r"^-?[0-9]{1,15}$")
    return F.when(is_epoch_ms, F.timestamp_millis(ts.try_cast("long"))).otherwise(ts.try_cast("timestamp"))


def _is_missing(column: Column) -> Column:
    return column.isNull() | (column.cast("string").rlike(r"^\s*$"))


def reject_reason(source: str) -> Column:
    """The first rule a record breaks, as its quarantine reason code; NULL for a valid record.

    Order: ``malformed``, ``missing_<field>`` (contract order), ``bad_ts``, ``negative_value``.
    """
    rules = [(F.col("malformed"), schema.MALFORMED)]
    rules += [(_is_missing(F.col(field)), schema.missing(field)) for field in schema.REQUIRED_FIELDS[source]]
    rules.append((F.col(EVENT_TS).isNull(), schema.BAD_TS))
    if source == "conversions":
        rules.append(((F.col("value") < 0) | F.isnan("value"), schema.NEGATIVE_VALUE))
    reason = F.lit(None).cast("string")
    for broken, code in reversed(rules):
        reason = F.when(broken, F.lit(code)).otherwise(reason)
    return reason


def check_records(raw: DataFrame, source: str) -> DataFrame:
    """Adds ``event_ts``, ``reason`` (NULL when valid) and ``is_duplicate``: among valid records
    with the same id, all but the first (earliest folder date, then time, then text) are
    duplicates.

    The records are hash-partitioned by the id into ``spark.sql.shuffle.partitions`` parts (a
    fixed number, which adaptive execution leaves as it is, so the partitioning survives a cache)
    and the window numbers them within that partitioning, valid records sorted first (so they
    are numbered as among themselves): the joins on that id downstream (clicks to their
    exposures, samples to their click labels) reuse this one shuffle instead of moving every
    record again."""
    id_field = schema.ID_FIELD[source]
    partitions = int(raw.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    checked = (raw.withColumn(EVENT_TS, parse_ts(F.col("ts"))).withColumn(REASON, reject_reason(source))
               .repartition(partitions, id_field))
    is_valid = F.col(REASON).isNull()
    first_copy = (Window.partitionBy(id_field).orderBy((~is_valid).asc(), "dt", EVENT_TS, "raw")
                  .rowsBetween(Window.unboundedPreceding, Window.currentRow))
    copy_number = F.when(is_valid, F.row_number().over(first_copy))
    return checked.withColumn(IS_DUPLICATE, F.coalesce(copy_number > 1, F.lit(False)))
