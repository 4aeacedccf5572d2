"""build-samples throughput against DuckDB running the same label rules, at several sizes.

    .venv/bin/python bench/build_samples.py                       # 1M and 10M exposures
    .venv/bin/python bench/build_samples.py --sizes 400000 4000000 --data /tmp/worlds
    .venv/bin/python bench/build_samples.py --sizes 10000000 --driver-memory 2g --engines spark

Each size is generated over ``--days`` days (4) with the default dirt (not timed; with ``--data``
a world generated before is reused). Then one backfill rebuilds the generated days, timed twice on the same input in this process:
``pipeline build-samples`` (one warm ``local[2]`` session, Delta tables) and the reference,
``bench/duckdb_reference.py`` (the same rules in DuckDB SQL on 2 threads, samples to plain
Parquet, no quarantine table). Both report the ``runs`` counts and the samples' label sums, and
the benchmark fails when they differ. Prints exposures/s of each, Spark's speed as a share of
DuckDB's, the peak memory of each (the Spark JVM's resident set and heap, the DuckDB process's
resident set) and, over several sizes, time(largest) / time(smallest) next to the linear ratio.
Needs the ``bench`` extra (DuckDB).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time

from pipeline.config import load_config
from pipeline.samples.build import build_samples
from pipeline.samples.labels import backfill_dates
from pipeline.spark import get_spark
from pipeline.synth.generate import generate

START = dt.date(2026, 10, 1)


def world(data: str | None, exposures: int, days: int) -> tuple[str, bool]:
    """The folder of a generated world of ``exposures`` over ``days`` (reused under ``data``)."""
    root = os.path.join(data, f"w{exposures}-{days}d") if data else tempfile.mkdtemp(prefix="bench-world-")
    marker = os.path.join(root, "GENERATED")
    if not os.path.exists(marker):
        cfg = load_config(None, [f"storage.root={root}", f"synth.days={days}", f"synth.start_date={START}",
                                 f"synth.exposures_per_day={exposures // days}"])
        summary = generate(cfg, progress=False)
        with open(marker, "w", encoding="utf-8") as fh:
            fh.write(str(summary.lines))
    return root, data is None


def raw_lines(root: str) -> int:
    with open(os.path.join(root, "GENERATED"), encoding="utf-8") as fh:
        return int(fh.read())


class PeakMemory:
    """Peak resident set of a process since ``reset`` (Linux: ``/proc/<pid>/clear_refs``)."""

    def __init__(self, pid: int):
        self.pid = pid

    def reset(self) -> None:
        with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")

    def peak_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as fh:
            line = next(line for line in fh if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024


class JvmHeap:
    """Peak heap use of the session's JVM since ``reset`` (the memory pools' peak usage)."""

    def __init__(self, spark):
        self.management = spark.sparkContext._jvm.java.lang.management.ManagementFactory

    def _pools(self):
        return [p for p in self.management.getMemoryPoolMXBeans() if str(p.getType()) == "Heap memory"]

    def reset(self) -> None:
        for pool in self._pools():
            pool.resetPeakUsage()

    def peak_bytes(self) -> int:
        return sum(pool.getPeakUsage().getUsed() for pool in self._pools())


def run_spark(spark, root: str, days: int) -> tuple[float, dict]:
    out = tempfile.mkdtemp(prefix="bench-tables-")
    try:
        cfg = load_config(None, [f"storage.root={out}", *[f"raw.{s}={root}/raw/{s}" for s in
                                                          ("exposures", "clicks", "conversions")]])
        dates = backfill_dates(START, START + dt.timedelta(days=days - 1), cfg.labels)
        began = time.perf_counter()
        summary = build_samples(spark, cfg, dates, "backfill")
        seconds = time.perf_counter() - began
        samples = (spark.read.format("delta").load(cfg.table_path("samples"))
                   .selectExpr("count(*) AS rows", "sum(click) AS clicks", "sum(conversion) AS conversions",
                               "round(sum(conversion_value), 2) AS value").first().asDict())
        return seconds, {**summary.counts, "samples": samples}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_duckdb(root: str, days: int) -> tuple[float, dict]:
    import duckdb

    from duckdb_reference import build

    cfg = load_config(None)
    out = tempfile.mkdtemp(prefix="bench-duckdb-")
    try:
        start, end = START, START + dt.timedelta(days=days - 1)
        dates = backfill_dates(start, end, cfg.labels)
        con = duckdb.connect()
        con.execute("SET threads = 2")
        began = time.perf_counter()
        counts = build(con, f"{root}/raw", f"{out}/samples", start=start, end=end, read_from=dates.read_from,
                       click_window_hours=cfg.labels.click_window_hours,
                       attribution_window_days=cfg.labels.attribution_window_days,
                       lookback_days=cfg.labels.lookback_days,
                       categorical=cfg.features.categorical, numeric=cfg.features.numeric)
        seconds = time.perf_counter() - began
        con.close()
        return seconds, counts
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--data", help="keep generated worlds here and reuse them")
    parser.add_argument("--driver-memory", default=None, help="spark.driver.memory (default: the conf's)")
    parser.add_argument("--engines", nargs="+", default=["spark", "duckdb"], choices=["spark", "duckdb"])
    args = parser.parse_args()
    if "duckdb" in args.engines:
        try:
            import duckdb  # noqa: F401
        except ImportError:
            raise SystemExit('DuckDB is missing: pip install -e ".[bench]" (or run with --engines spark)') from None
    overrides = [f"spark.conf.spark.driver.memory={args.driver_memory}"] if args.driver_memory else []
    spark = get_spark(load_config(None, overrides), app_name="bench-build-samples")
    jvm = PeakMemory(int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()))
    heap, here = JvmHeap(spark), PeakMemory(os.getpid())
    warm, scratch = world(None, 20_000, 2)
    run_spark(spark, warm, 2)  # warm-up: JVM start, code generation
    shutil.rmtree(warm, ignore_errors=True)
    print(f"driver memory {spark.conf.get('spark.driver.memory', '1g')}; {args.days} days generated and rebuilt",
          flush=True)
    print(f"{'exposures':>11} {'raw lines':>11} {'spark s':>8} {'spark exp/s':>12} {'duckdb s':>9} "
          f"{'duckdb exp/s':>13} {'ratio':>6} {'JVM RSS GB':>10} {'heap GB':>8} {'duckdb RSS GB':>13}", flush=True)
    seconds = {}
    for size in sorted(args.sizes):
        root, scratch = world(args.data, size, args.days)
        lines = raw_lines(root)
        try:
            row = {"spark": (float("nan"), None), "duckdb": (float("nan"), None)}
            jvm_peak = heap_peak = duck_peak = float("nan")
            if "spark" in args.engines:
                jvm.reset()
                heap.reset()
                row["spark"] = run_spark(spark, root, args.days)
                jvm_peak, heap_peak = jvm.peak_bytes() / 1e9, heap.peak_bytes() / 1e9
            if "duckdb" in args.engines:
                here.reset()
                row["duckdb"] = run_duckdb(root, args.days)
                duck_peak = here.peak_bytes() / 1e9
        finally:
            if scratch:
                shutil.rmtree(root, ignore_errors=True)
        (spark_s, spark_counts), (duck_s, duck_counts) = row["spark"], row["duckdb"]
        if spark_counts and duck_counts and spark_counts != duck_counts:
            raise SystemExit(f"the engines disagree at {size:,}:\nspark  {spark_counts}\nduckdb {duck_counts}")
        seconds[size] = spark_s
        print(f"{size:>11,} {lines:>11,} {spark_s:>8.1f} {size / spark_s:>12,.0f} "
              f"{duck_s:>9.1f} {size / duck_s:>13,.0f} {duck_s / spark_s:>6.2f} {jvm_peak:>10.2f} "
              f"{heap_peak:>8.2f} {duck_peak:>13.2f}", flush=True)
    if len(seconds) > 1:
        small, large = min(seconds), max(seconds)
        print(f"scaling (spark): time({large:,}) / time({small:,}) = {seconds[large] / seconds[small]:.2f} "
              f"(linear: {large / small:.2f})")


if __name__ == "__main__":
    main()
