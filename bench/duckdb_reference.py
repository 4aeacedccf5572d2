"""The build-samples label rules in DuckDB SQL: the single-machine reference for bench/build_samples.py.

The same input (JSON lines under ``<raw>/<source>/dt=YYYY-MM-DD/``), the same rules as
``pipeline.logs.validate`` and ``pipeline.samples.labels`` (record checks in the same order,
first copy by folder date, time and text, parents among valid first copies, the click and
attribution windows, ``out_of_range``), the same samples rows. What it leaves out, so the
comparison flatters DuckDB rather than Spark: no Delta (samples go to plain Parquet files by
``dt``), no quarantine table, no ``runs`` row, no input checks. The counts it returns are the
``runs`` counts, so a benchmark can check both engines agree before it compares their speed.

Needs the ``bench`` extra (``pip install duckdb``); the pipeline itself never imports it.
"""
from __future__ import annotations

import datetime as dt

SOURCES = ("exposures", "clicks", "conversions")
ID = {"exposures": "impression_id", "clicks": "click_id", "conversions": "conversion_id"}
REQUIRED = {"exposures": ("impression_id", "ts", "user_id", "item_id"),
            "clicks": ("click_id", "impression_id", "ts"),
            "conversions": ("conversion_id", "click_id", "ts", "value")}
FIELDS = {"exposures": {"impression_id": "VARCHAR", "request_id": "VARCHAR", "ts": "VARCHAR", "user_id": "VARCHAR",
                        "item_id": "VARCHAR", "position": "INTEGER"},
          "clicks": {"click_id": "VARCHAR", "impression_id": "VARCHAR", "ts": "VARCHAR"},
          "conversions": {"conversion_id": "VARCHAR", "click_id": "VARCHAR", "ts": "VARCHAR", "value": "DOUBLE"}}


def _fields(source: str, categorical: tuple[str, ...], numeric: tuple[str, ...]) -> dict[str, str]:
    fields = dict(FIELDS[source])
    if source == "exposures":
        fields.update({name: "VARCHAR" for name in categorical if name not in fields})
        fields.update({name: "DOUBLE" for name in numeric if name not in fields})
    return fields


def _checked(source: str, raw_root: str, read_from: dt.date, end: dt.date, fields: dict[str, str]) -> str:
    """SQL of one source's records with ``event_ts``, ``reason`` and ``is_duplicate``."""
    struct = "{" + ",".join(f'"{name}":"{kind}"' for name, kind in fields.items()) + "}"
    lines = (f"read_csv('{raw_root}/{source}/dt=*/*.jsonl', columns={{'raw': 'VARCHAR'}}, header=false, "
             f"delim=chr(1), quote='', escape='', auto_detect=false, hive_partitioning=true, "
             f"hive_types={{'dt': 'DATE'}})")
    missing = [f"WHEN p.{name} IS NULL OR regexp_full_match(CAST(p.{name} AS VARCHAR), '\\s*') "
               f"THEN 'missing_{name}'" for name in REQUIRED[source]]
    negative = "WHEN p.value < 0 OR isnan(p.value) THEN 'negative_value'" if source == "conversions" else ""
    columns = ", ".join(f"p.{name} AS {name}" for name in fields if name != "ts")
    return f"""
        WITH lines AS (
            SELECT dt, raw, CASE WHEN json_valid(raw) THEN json_transform(raw, '{struct}') END AS p FROM {lines}
            WHERE dt BETWEEN DATE '{read_from}' AND DATE '{end}'),
        parsed AS (
            SELECT dt, raw, p, CASE WHEN regexp_full_match(p.ts, '-?[0-9]{{1,15}}')
                                    THEN epoch_ms(TRY_CAST(p.ts AS BIGINT))
                                    ELSE CAST(TRY_CAST(p.ts AS TIMESTAMPTZ) AS TIMESTAMP) END AS event_ts
            FROM lines),
        reasoned AS MATERIALIZED (
            SELECT dt, raw, {columns}, event_ts,
                   CASE WHEN p IS NULL THEN 'malformed' {' '.join(missing)}
                        WHEN event_ts IS NULL THEN 'bad_ts' {negative} END AS reason
            FROM parsed),
        -- Copies are rare: number only the valid records whose id occurs more than once (a hash
        -- aggregate and a small window, where a window over every record sorts them all).
        repeated AS (
            SELECT {ID[source]} FROM reasoned WHERE reason IS NULL GROUP BY {ID[source]} HAVING count(*) > 1),
        copies AS (
            SELECT r.*, row_number() OVER (PARTITION BY r.{ID[source]} ORDER BY dt, event_ts, raw) > 1
                       AS is_duplicate
            FROM reasoned AS r SEMI JOIN repeated AS k ON r.{ID[source]} = k.{ID[source]}
            WHERE r.reason IS NULL)
        SELECT * FROM copies
        UNION ALL
        SELECT r.*, false AS is_duplicate
        FROM reasoned AS r ANTI JOIN repeated AS k ON r.{ID[source]} = k.{ID[source]}
        UNION ALL
        SELECT r.*, false AS is_duplicate
        FROM reasoned AS r SEMI JOIN repeated AS k ON r.{ID[source]} = k.{ID[source]}
        WHERE r.reason IS NOT NULL"""


def _classify_children(source: str, parents: str, parent_field: str, start: dt.date, end: dt.date,
                       window_seconds: int, unknown: str, before: str) -> str:
    """SQL of the clicks (or conversions) matched to their parents: status, is_late, attributed."""
    return f"""
        WITH joined AS (
            SELECT c.*, p.parent_ts, p.parent_attributable
            FROM {source}_checked AS c LEFT JOIN {parents} AS p ON c.{parent_field} = p.{parent_field}),
        reasoned AS (
            SELECT *, coalesce(reason, CASE WHEN reason IS NULL AND NOT is_duplicate THEN
                          CASE WHEN parent_ts IS NULL AND dt < DATE '{end}' THEN '{unknown}'
                               WHEN parent_ts IS NOT NULL AND event_ts < parent_ts THEN '{before}' END END)
                      AS quarantine_reason
            FROM joined),
        classified AS (
            SELECT *, CASE WHEN quarantine_reason IS NOT NULL THEN 'quarantined'
                           WHEN is_duplicate THEN 'duplicate'
                           WHEN parent_ts IS NULL THEN 'out_of_range'
                           ELSE 'accepted' END AS status,
                      epoch(event_ts) - epoch(parent_ts) AS delay_s
            FROM reasoned)
        SELECT *, status = 'accepted' AND delay_s > {window_seconds} AS is_late,
                  status = 'accepted' AND NOT delay_s > {window_seconds} AND coalesce(parent_attributable, false)
                      AS attributed,
                  dt BETWEEN DATE '{start}' AND DATE '{end}' AS owned
        FROM classified"""


def build(con, raw_root: str, out: str, *, start: dt.date, end: dt.date, read_from: dt.date,
          click_window_hours: int, attribution_window_days: int, lookback_days: int,
          categorical: tuple[str, ...], numeric: tuple[str, ...]) -> dict:
    """Builds the samples of ``[start, end]`` into Parquet files under ``out`` (by ``dt``).

    Returns:
        ``{source: {read, accepted, duplicates, quarantined, late, out_of_range}}`` over the owned
        records, and ``samples``: rows, clicks, conversions and the value sum of the samples.
    """
    con.execute("SET TimeZone = 'UTC'")
    fields = _fields("exposures", categorical, numeric)
    for source in SOURCES:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {source}_checked AS "
                    + _checked(source, raw_root, read_from, end, _fields(source, categorical, numeric)))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE exposures_classified AS
        SELECT *, CASE WHEN reason IS NOT NULL THEN 'quarantined' WHEN is_duplicate THEN 'duplicate'
                       WHEN CAST(event_ts AS DATE) <> dt THEN 'out_of_range' ELSE 'accepted' END AS status,
                  false AS is_late, dt BETWEEN DATE '{start}' AND DATE '{end}' AS owned
        FROM exposures_checked""")
    con.execute("""
        CREATE OR REPLACE TEMP VIEW exposure_parents AS
        SELECT impression_id, event_ts AS parent_ts, status = 'accepted' AND owned AS parent_attributable
        FROM exposures_classified WHERE reason IS NULL AND NOT is_duplicate""")
    con.execute("CREATE OR REPLACE TEMP TABLE clicks_classified AS " + _classify_children(
        "clicks", "exposure_parents", "impression_id", start, end, click_window_hours * 3600,
        "unknown_impression", "click_before_exposure"))
    con.execute("""
        CREATE OR REPLACE TEMP VIEW click_parents AS
        SELECT click_id, event_ts AS parent_ts, attributed AS parent_attributable
        FROM clicks_classified WHERE reason IS NULL AND NOT is_duplicate""")
    con.execute("CREATE OR REPLACE TEMP TABLE conversions_classified AS " + _classify_children(
        "conversions", "click_parents", "click_id", start, end, attribution_window_days * 86400,
        "unknown_click", "conversion_before_click"))
    keys = ("impression_id", "request_id", "user_id", "item_id", "position")
    features = [name for name in fields if name not in (*keys, "ts")]
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW samples AS
        WITH attributed_clicks AS (
            SELECT click_id, impression_id, event_ts FROM clicks_classified WHERE attributed),
        click_labels AS (
            SELECT impression_id, min(event_ts) AS click_ts FROM attributed_clicks GROUP BY impression_id),
        conversion_labels AS (
            SELECT k.impression_id, sum(v.value) AS conversion_value
            FROM conversions_classified AS v JOIN attributed_clicks AS k ON v.click_id = k.click_id
            WHERE v.attributed GROUP BY k.impression_id)
        SELECT {', '.join(f'e.{k}' for k in keys)}, e.event_ts AS exposure_ts,
               {', '.join(f'e.{name}' for name in features)},
               CAST(cl.click_ts IS NOT NULL AS INTEGER) AS click, cl.click_ts,
               CAST(vl.conversion_value IS NOT NULL AS INTEGER) AS conversion,
               coalesce(vl.conversion_value, 0.0) AS conversion_value,
               e.dt + INTERVAL {lookback_days} DAY <= DATE '{end}' AS labels_final, e.dt
        FROM exposures_classified AS e
        LEFT JOIN click_labels AS cl ON e.impression_id = cl.impression_id
        LEFT JOIN conversion_labels AS vl ON e.impression_id = vl.impression_id
        WHERE e.status = 'accepted' AND e.owned""")
    con.execute(f"COPY samples TO '{out}' (FORMAT parquet, PARTITION_BY (dt), OVERWRITE_OR_IGNORE true)")
    counts = {}
    for source in SOURCES:
        row = con.execute(f"""
            SELECT count(*), count(*) FILTER (status = 'accepted'), count(*) FILTER (status = 'duplicate'),
                   count(*) FILTER (status = 'quarantined'), count(*) FILTER (is_late),
                   count(*) FILTER (status = 'out_of_range')
            FROM {source}_classified WHERE owned""").fetchone()
        counts[source] = dict(zip(("read", "accepted", "duplicates", "quarantined", "late", "out_of_range"), row))
    row = con.execute(f"SELECT count(*), sum(click), sum(conversion), round(sum(conversion_value), 2) "
                      f"FROM read_parquet('{out}/*/*.parquet')").fetchone()
    counts["samples"] = dict(zip(("rows", "clicks", "conversions", "value"), row))
    return counts
