"""Where a build-samples run spends its time: Spark jobs, stages, raw-file scans, shuffles, commits.

    .venv/bin/python bench/profile_build_samples.py --root DIR [--start D1 --end D2] [--set key=value ...]

Runs one backfill over the raw logs under ``DIR/raw`` (written by ``pipeline generate``) with
Spark's event log on, then reads the event log back and prints: the SQL executions (one per
action, the Delta writes among them) with their wall time and whether the plan holds a Python
UDF, then the jobs and the stages with their input (raw files and caches) and shuffle bytes:
what was read how often and what moved. Nothing here changes what the job does.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import glob
import json
import os
import shutil
import tempfile
import time

from pipeline.config import load_config
from pipeline.samples.build import build_samples
from pipeline.samples.labels import backfill_dates
from pipeline.spark import get_spark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--start", default="2026-10-01")
    parser.add_argument("--end", default="2026-10-04")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    events = tempfile.mkdtemp(prefix="build-samples-events-")
    out = tempfile.mkdtemp(prefix="build-samples-tables-")
    cfg = load_config(None, [f"storage.root={out}", *[f"raw.{s}={args.root}/raw/{s}"
                                                      for s in ("exposures", "clicks", "conversions")],
                             "spark.conf.spark.eventLog.enabled=true", f"spark.conf.spark.eventLog.dir={events}",
                             "spark.conf.spark.eventLog.compress=false",
                             *args.overrides])
    spark = get_spark(cfg, app_name="profile-build-samples")
    dates = backfill_dates(dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end), cfg.labels)
    began = time.perf_counter()
    summary = build_samples(spark, cfg, dates, "backfill")
    seconds = time.perf_counter() - began
    spark.stop()
    print(summary.line())
    report(sorted(f for f in glob.glob(os.path.join(events, "**", "*"), recursive=True) if os.path.isfile(f)), seconds)
    print(f"event log: {events}")
    shutil.rmtree(out, ignore_errors=True)


def read_events(paths: list[str]):
    """The event log's events in order (Spark writes it as one or more rolled files)."""
    for path in paths:
        if os.path.basename(path).startswith("appstatus"):
            continue
        with open(path, encoding="utf-8") as fh:
            yield from (json.loads(line) for line in fh if line.strip())


def report(paths: list[str], seconds: float) -> None:
    executions, jobs, stages = {}, {}, {}
    for event in read_events(paths):
        kind = event["Event"]
        if kind.endswith("SQLExecutionStart"):
            plan = event.get("physicalPlanDescription", "")
            executions[event["executionId"]] = {
                "start": event["time"], "description": event.get("description", ""),
                "python_udfs": sum(node in plan for node in ("BatchEvalPython", "ArrowEvalPython"))}
        elif kind.endswith("SQLExecutionEnd") and event["executionId"] in executions:
            executions[event["executionId"]]["end"] = event["time"]
        elif kind == "SparkListenerJobStart":
            props = event.get("Properties") or {}
            jobs[event["Job ID"]] = {"start": event["Submission Time"], "stages": event["Stage IDs"],
                                     "site": props.get("callSite.short", ""),
                                     "sql": props.get("spark.sql.execution.id")}
        elif kind == "SparkListenerJobEnd":
            jobs[event["Job ID"]]["end"] = event["Completion Time"]
        elif kind == "SparkListenerStageCompleted":
            info = event["Stage Info"]
            acc = {a["Name"]: a.get("Value") for a in info.get("Accumulables", [])}
            stages[info["Stage ID"]] = {
                "name": info["Stage Name"], "tasks": info["Number of Tasks"],
                "seconds": (info.get("Completion Time", 0) - info.get("Submission Time", 0)) / 1000,
                "input": int(acc.get("internal.metrics.input.bytesRead") or 0),
                "shuffle_write": int(acc.get("internal.metrics.shuffle.write.bytesWritten") or 0),
                "shuffle_read": int(acc.get("internal.metrics.shuffle.read.remoteBytesRead") or 0)
                + int(acc.get("internal.metrics.shuffle.read.localBytesRead") or 0)}
    print(f"\nrun: {seconds:.1f} s; {len(executions)} SQL executions, {len(jobs)} jobs, {len(stages)} stages run")
    print(f"{'exec':>4} {'s':>6} {'python UDF':>10}  description")
    for key, e in sorted(executions.items()):
        took = (e.get("end", e["start"]) - e["start"]) / 1000
        print(f"{key:>4} {took:>6.1f} {'yes' if e['python_udfs'] else 'no':>10}  {e['description'][:90]}")
    print(f"\n{'job':>4} {'s':>6} {'stages':>6}  call site")
    for key, j in sorted(jobs.items()):
        print(f"{key:>4} {(j.get('end', j['start']) - j['start']) / 1000:>6.1f} {len(j['stages']):>6}  {j['site'][:100]}")
    print(f"\n{'stage':>5} {'s':>6} {'tasks':>5} {'input MB':>9} {'shufW MB':>9} {'shufR MB':>9}  name")
    for key, s in sorted(stages.items()):
        print(f"{key:>5} {s['seconds']:>6.1f} {s['tasks']:>5} {s['input'] / 1e6:>9.1f} {s['shuffle_write'] / 1e6:>9.1f} "
              f"{s['shuffle_read'] / 1e6:>9.1f}  {s['name'][:90]}")
    totals = collections.Counter()
    for s in stages.values():
        totals["input"] += s["input"]
        totals["shuffle_write"] += s["shuffle_write"]
        totals["stage_seconds"] += s["seconds"]
    print(f"\ntotals: input {totals['input'] / 1e6:.1f} MB, shuffle written {totals['shuffle_write'] / 1e6:.1f} MB, "
          f"stage time {totals['stage_seconds']:.1f} s")


if __name__ == "__main__":
    main()
