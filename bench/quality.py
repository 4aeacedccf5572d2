"""The model-quality suite: every model on a family of generated worlds, against the oracle and
the logistic-regression floor.

    .venv/bin/python bench/quality.py [--worlds demo sparse ...] [--seeds 1 2 3] [--models esmm lr ...]
        [--set training.learning_rate=0.01 ...] [--out results.csv]

Prints one line per (world, seed, model) as it goes, then the mean AUC per world and model with
the oracle, and writes every row to ``--out`` (CSV). See docs/quality.md for the worlds and the
results of the shipped defaults.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")

from pipeline.config import load_config  # noqa: E402
from pipeline.models import MODELS  # noqa: E402
from pipeline.quality.suite import TASKS, run_suite  # noqa: E402
from pipeline.quality.worlds import WORLDS  # noqa: E402
from pipeline.spark import get_spark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    spark = get_spark(load_config(None, ["spark.conf.spark.ui.enabled=false"]), app_name="bench-quality")
    spark.sparkContext.setLogLevel("ERROR")
    results = run_suite(spark, [WORLDS[w] for w in args.worlds], args.seeds, args.models, args.overrides,
                        log=lambda line: print(line, flush=True))
    if args.out:
        results.to_csv(args.out, index=False)
    columns = [f"{prefix}_{kind}" for _, prefix in TASKS for kind in ("auc", "oracle")]
    summary = results.groupby(["world", "model"], sort=False)[columns].mean().round(3)
    print(summary.to_string())


if __name__ == "__main__":
    main()
