"""One tiny hand-written case per label and quarantine rule, built in one backfill run.

Windows: click 24 h, attribution 3 days; the run rebuilds 2026-10-01..2026-10-06 as of 10-06,
so 10-01 and 10-02 are final.
"""
import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from pipeline.tables import samples_schema

from tests.samples.conftest import backfill, make_cfg, table, write_raw

FEATURES = ["features.categorical=[user_id, item_id, position, category]", "features.numeric=[price]"]


def exposure(impression_id, ts, **extra):
    record = {"impression_id": impression_id, "request_id": "r1", "ts": ts, "user_id": "u1",
              "item_id": "i1", "position": 1, "category": "c1", "price": 9.5}
    record.update(extra)
    return {k: v for k, v in record.items() if v is not ...}


def click(click_id, impression_id, ts):
    return {"click_id": click_id, "impression_id": impression_id, "ts": ts}


def conversion(conversion_id, click_id, ts, value):
    return {"conversion_id": conversion_id, "click_id": click_id, "ts": ts, "value": value}


DUPLICATE_EXPOSURE = json.dumps(exposure("e8", "2026-10-01T09:00:00Z"))
DUPLICATE_CLICK = json.dumps(click("c1", "e1", "2026-10-02T10:00:00Z"))
MALFORMED = '{"impression_id": "e12", "ts": "2026-10-01T01:00:00Z", "user_id": '


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    # Hand-made rows: most dates have no clicks or conversions, and many rows are dirty on purpose.
    cfg = make_cfg(tmp_path_factory.mktemp("rules"), *FEATURES, "raw.may_be_empty=[clicks, conversions]",
                   "raw.max_quarantined_share=1.0")
    write_raw(cfg, "exposures", "2026-10-01", [
        exposure("e1", "2026-10-01T10:00:00Z"),
        exposure("e2", "2026-10-01T10:00:00Z"),
        exposure("e3", "2026-10-01T12:00:00Z"),
        exposure("e4", "2026-10-01T12:00:00Z"),
        exposure("e5", "2026-10-01T13:00:00Z"),
        exposure("e6", "2026-10-01T23:59:30Z"),
        exposure("e7", "2026-10-01T10:00:00+02:00"),          # 08:00 UTC
        DUPLICATE_EXPOSURE, DUPLICATE_EXPOSURE,
        exposure("e9", "2026-10-01T10:00:00Z"),
        exposure("e10", "2026-10-01T10:00:00Z", user_id=None),
        exposure("e11", "yesterday"),
        MALFORMED,
        exposure("e13", ...),                                  # no ts at all
        exposure("e14", "2026-10-01T11:00:00Z", price=-1.0, category=None),
    ])
    for day in ("2026-10-02", "2026-10-03", "2026-10-04", "2026-10-05", "2026-10-06"):
        write_raw(cfg, "exposures", day, [exposure(f"x-{day}", f"{day}T12:00:00Z")])
    write_raw(cfg, "clicks", "2026-10-01", [
        click("c3", "e3", "2026-10-01T12:05:00Z"),
        click("c4", "e4", "2026-10-01T12:05:00Z"),
        click("c5", "e5", "2026-10-01T13:01:00Z"),
        click("c7", "e7", 1790842500000),                      # epoch ms: 2026-10-01T08:15:00Z
        click("c9", "e9", "2026-10-01T09:00:00Z"),             # before its exposure
        click("c-orphan", "nope", "2026-10-01T15:00:00Z"),
        click("c-missing", None, "2026-10-01T15:00:00Z"),
    ])
    write_raw(cfg, "clicks", "2026-10-02", [
        click("c1", "e1", "2026-10-02T10:00:00Z"),             # exactly at the window edge
        DUPLICATE_CLICK,
        click("c2", "e2", "2026-10-02T10:00:01Z"),             # one second past it
        click("c6", "e6", "2026-10-02T00:00:10Z"),             # crosses midnight
    ])
    write_raw(cfg, "clicks", "2026-10-06", [click("c-last", "nope2", "2026-10-06T15:00:00Z")])
    write_raw(cfg, "conversions", "2026-10-02", [
        conversion("v3", "c3", "2026-10-02T12:05:00Z", 20.0),
        conversion("v3", "c3", "2026-10-02T12:05:00Z", 20.0),  # duplicate
        conversion("v5a", "c5", "2026-10-02T13:00:00Z", 10.5),
        conversion("v5b", "c5", "2026-10-02T14:00:00Z", 4.25),
        conversion("v-neg", "c5", "2026-10-02T15:00:00Z", -5.0),
        conversion("v-orphan", "no-such-click", "2026-10-02T15:00:00Z", 1.0),
        conversion("v-novalue", "c5", "2026-10-02T15:00:00Z", None),
        conversion("v-before", "c3", "2026-10-01T12:00:00Z", 3.0),  # before its click
    ])
    write_raw(cfg, "conversions", "2026-10-04", [
        conversion("v4", "c4", "2026-10-04T12:05:01Z", 7.0),   # 1 s past the attribution window
        conversion("v3-edge", "c3", "2026-10-04T12:05:00Z", 1.0),  # exactly at the edge
    ])
    summary = backfill(spark, cfg, "2026-10-01", "2026-10-06")
    samples = {r["impression_id"]: r.asDict() for r in table(spark, cfg, "samples").collect()}
    quarantine = table(spark, cfg, "quarantine").collect()
    return cfg, summary, samples, quarantine


def reasons_of(quarantine, source):
    return sorted(r["reason"] for r in quarantine if r["source"] == source)


def test_click_window_edges(built):
    _, _, samples, _ = built
    assert samples["e1"]["click"] == 1  # exactly 24 h later
    assert samples["e2"]["click"] == 0  # 24 h + 1 s
    assert samples["e6"]["click"] == 1 and samples["e6"]["click_ts"].day == 2  # next event date
    assert samples["e7"]["click"] == 1  # offset exposure ts, epoch-ms click ts
    assert samples["e9"]["click"] == 0  # its click came before it


def test_conversion_rules(built):
    _, _, samples, _ = built
    assert samples["e3"]["conversion"] == 1
    assert samples["e3"]["conversion_value"] == pytest.approx(21.0)  # v3 once (deduplicated) + v3-edge
    assert samples["e4"]["click"] == 1 and samples["e4"]["conversion"] == 0  # 3 days + 1 s
    assert samples["e4"]["conversion_value"] == 0.0
    assert samples["e5"]["conversion_value"] == pytest.approx(14.75)  # two orders, bad ones ignored
    assert all(s["conversion"] <= s["click"] for s in samples.values())


def test_samples_schema_and_features(built, spark):
    cfg, _, samples, _ = built
    assert table(spark, cfg, "samples").schema == samples_schema(cfg.features)
    e1 = samples["e1"]
    assert e1["category"] == "c1" and e1["price"] == 9.5 and e1["position"] == 1
    assert samples["e14"]["category"] is None and samples["e14"]["price"] == -1.0  # features are not labels
    assert str(samples["e7"]["exposure_ts"]) == "2026-10-01 08:00:00"
    assert set(samples) == {"e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9", "e14",
                            *(f"x-2026-10-0{d}" for d in range(2, 7))}
    final = {s["impression_id"]: s["labels_final"] for s in samples.values()}
    assert final["e1"] and final["x-2026-10-02"] and not final["x-2026-10-03"]


def test_quarantine_reasons(built):
    _, _, _, quarantine = built
    assert reasons_of(quarantine, "exposures") == ["bad_ts", "malformed", "missing_ts", "missing_user_id"]
    assert reasons_of(quarantine, "clicks") == ["click_before_exposure", "missing_impression_id",
                                                "unknown_impression"]
    assert reasons_of(quarantine, "conversions") == ["conversion_before_click", "missing_value",
                                                     "negative_value", "unknown_click"]
    malformed = [r for r in quarantine if r["reason"] == "malformed"][0]
    assert malformed["raw"] == MALFORMED and str(malformed["dt"]) == "2026-10-01"
    assert all(r["run_id"] for r in quarantine)


def test_counts_reconcile_exactly(built):
    _, summary, _, _ = built
    e, c, v = (summary.counts[s] for s in ("exposures", "clicks", "conversions"))
    assert e == {"read": 20, "accepted": 15, "duplicates": 1, "quarantined": 4, "late": 0, "out_of_range": 0}
    assert c == {"read": 12, "accepted": 7, "duplicates": 1, "quarantined": 3, "late": 1, "out_of_range": 1}
    assert v == {"read": 10, "accepted": 5, "duplicates": 1, "quarantined": 4, "late": 1, "out_of_range": 0}
    for counts in (e, c, v):
        assert counts["read"] == counts["accepted"] + counts["duplicates"] + counts["quarantined"] + counts["out_of_range"]


def test_runs_row(built, spark):
    cfg, summary, _, _ = built
    runs = table(spark, cfg, "runs").where(F.col("run_id") == summary.run_id).collect()
    assert len(runs) == 1
    row = runs[0]
    assert row["status"] == "succeeded" and row["job"] == "build-samples" and row["mode"] == "backfill"
    assert row["clicks_out_of_range"] == 1 and row["conversions_late"] == 1
    assert row["quarantined_by_reason"]["malformed"] == 1
    assert row["samples_rows"] == 15 and row["final_partitions"] == 2
    assert row["samples_version"] == 0 and row["started_at"] <= row["finished_at"]


def test_a_day_is_usable_only_with_samples_whose_labels_are_final():
    from pipeline.errors import PipelineError
    from pipeline.samples.labels import require_final

    d1, d2, d3 = dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 3)
    finality = {d1: (120, True), d2: (80, False)}
    assert require_final(finality, d1, missing="", not_final="") == 120
    with pytest.raises(PipelineError, match=r"^samples for 2026-10-02 are not final yet \(labels_final = false\); wait$"):
        require_final(finality, d2, missing="", not_final="wait")
    with pytest.raises(PipelineError, match=r"^no samples for 2026-10-03; build them$"):
        require_final(finality, d3, missing="; build them", not_final="")
