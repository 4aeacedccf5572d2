"""Model comparison on generated data: per model, CTR / CVR (clicked) / CTCVR AUC, the
entire-space CVR AUC, the oracle AUC of each, and training samples/s on this machine.

    .venv/bin/python bench/models.py [--conf conf/local.yaml] [--set key=value ...]

Generates the conf's synthetic world, builds its samples (backfill over every generated day),
then trains every model on the first four final days, validates on the next day and reports on
the one after (the same split as `make demo`).
"""
from __future__ import annotations

import argparse
import datetime as dt

from pipeline.config import load_config
from pipeline.models import MODELS
from pipeline.samples.build import build_samples
from pipeline.samples.labels import backfill_dates
from pipeline.spark import get_spark
from pipeline.synth.generate import generate
from pipeline.training.train import train_model

TASKS = ("ctr", "cvr", "ctcvr", "cvr_entire_space")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    cfg = load_config(args.conf, args.overrides)
    generate(cfg, progress=False)
    spark = get_spark(cfg, app_name="bench-models")
    first = cfg.synth.start_date
    last = first + dt.timedelta(days=cfg.synth.days - 1)
    build_samples(spark, cfg, backfill_dates(first, last, cfg.labels), "backfill")
    start, end = first, first + dt.timedelta(days=3)
    header = " ".join(f"{task + ' AUC (oracle)':>26}" for task in TASKS)
    print(f"{'model':<14} {header} {'samples/s':>10}")
    for name in args.models:
        summary = train_model(spark, cfg, start, end, model_name=name, progress=False)
        cells = []
        for task in TASKS:
            got = summary.metrics.get(task, {})
            auc = f"{got['auc']:.3f}" if "auc" in got else "-"
            cells.append(f"{auc + ' (' + format(got.get('oracle_auc', float('nan')), '.3f') + ')':>26}")
        print(f"{name:<14} {' '.join(cells)} {summary.samples_per_second:>10,.0f}", flush=True)


if __name__ == "__main__":
    main()
