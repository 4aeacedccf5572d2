"""build-samples throughput: exposures/s at two sizes and the scaling ratio between them.

    .venv/bin/python bench/build_samples.py                  # 1M and 10M exposures (about 25 min)
    .venv/bin/python bench/build_samples.py --sizes 100000 1000000

Each size is generated over 5 days (not timed), then one backfill run rebuilds the 5 exposure
dates from raw JSON lines with the default dirt (timed: the job alone, in one local[2] session).
Prints exposures/s per size and time(largest) / time(smallest) next to the linear ratio.
"""
from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time

from scaling import run_sizes

from pipeline.config import load_config
from pipeline.samples.build import build_samples
from pipeline.samples.labels import backfill_dates
from pipeline.spark import get_spark
from pipeline.synth.generate import generate

DAYS = 5


def measure(spark, exposures: int) -> tuple[float, int]:
    root = tempfile.mkdtemp(prefix="bench-build-samples-")
    try:
        cfg = load_config(None, [f"storage.root={root}", f"synth.days={DAYS}",
                                 f"synth.exposures_per_day={exposures // DAYS}"])
        summary = generate(cfg, progress=False)
        start = cfg.synth.start_date
        dates = backfill_dates(start, start + dt.timedelta(days=DAYS - 1), cfg.labels)
        began = time.perf_counter()
        build_samples(spark, cfg, dates, "backfill")
        return time.perf_counter() - began, summary.lines
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    spark = get_spark(load_config(None), app_name="bench-build-samples")
    measure(spark, 20_000)  # warm-up: JVM start, code generation
    run_sizes(lambda size: measure(spark, size), __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
