"""The raw-log contract (design section 1): sources, id fields, required fields, reason codes."""
from __future__ import annotations

SOURCES = ("exposures", "clicks", "conversions")

ID_FIELD = {"exposures": "impression_id", "clicks": "click_id", "conversions": "conversion_id"}

REQUIRED_FIELDS = {
    "exposures": ("impression_id", "ts", "user_id", "item_id"),
    "clicks": ("click_id", "impression_id", "ts"),
    "conversions": ("conversion_id", "click_id", "ts", "value"),
}

# The parent a child record refers to: (child source, field naming the parent, parent source).
PARENT = {"clicks": ("impression_id", "exposures"), "conversions": ("click_id", "clicks")}

MALFORMED = "malformed"
BAD_TS = "bad_ts"
NEGATIVE_VALUE = "negative_value"
UNKNOWN_PARENT = {"clicks": "unknown_impression", "conversions": "unknown_click"}
BEFORE_PARENT = {"clicks": "click_before_exposure", "conversions": "conversion_before_click"}


def missing(field: str) -> str:
    """The reason code of a record lacking a required field, e.g. ``missing_user_id``."""
    return f"missing_{field}"


QUARANTINE_REASONS = tuple(sorted(
    {MALFORMED, BAD_TS, NEGATIVE_VALUE, *UNKNOWN_PARENT.values(), *BEFORE_PARENT.values()}
    | {missing(f) for fields in REQUIRED_FIELDS.values() for f in fields}
))


# Fields of each source with their types. ``ts`` is text: ISO-8601 or epoch milliseconds.
BASE_FIELDS = {
    "exposures": (("impression_id", "string"), ("request_id", "string"), ("ts", "string"),
                  ("user_id", "string"), ("item_id", "string"), ("position", "int")),
    "clicks": (("click_id", "string"), ("impression_id", "string"), ("ts", "string")),
    "conversions": (("conversion_id", "string"), ("click_id", "string"), ("ts", "string"),
                    ("value", "double")),
}


def raw_schema(source: str, categorical: tuple[str, ...] = (), numeric: tuple[str, ...] = ()):
    """The explicit Spark schema of a raw source; exposures also carry the configured feature
    columns (categorical as text, numeric as double) beyond the base fields.

    Returns:
        A ``pyspark.sql.types.StructType``.
    """
    from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

    spark_type = {"string": StringType(), "int": IntegerType(), "double": DoubleType()}
    fields = [(name, kind) for name, kind in BASE_FIELDS[source]]
    if source == "exposures":
        known = {name for name, _ in fields}
        fields += [(name, "string") for name in categorical if name not in known]
        fields += [(name, "double") for name in numeric if name not in known]
    return StructType([StructField(name, spark_type[kind]) for name, kind in fields])
