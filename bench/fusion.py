"""Offline fusion comparison on the generated world: do the segment-aware strategies (dynamic,
learned) beat the best single linear fusion on the business metric?

    .venv/bin/python bench/fusion.py [--conf conf/local.yaml] [--set key=value ...]

Generates 14 days of the conf's world (final labels up to 10-10), builds the samples, trains ESMM
on 10-01..10-03 (validation 10-04, test 10-05) in one process, scores 10-04..10-10 with the linear
fusion, computes the dynamic weights as of 10-10 (from the final, scored days up to 10-06), trains
the learned gate on 10-09, and compares every strategy on 10-10 (value-weighted NDCG@K and
revenue@K per request, next to the day's best linear weights found by grid search: an upper bound
for any single linear fusion, since it is fitted on the evaluation day itself).

The generated value of a conversion is the item's price (lognormal per item); the fusion's value
term uses ``fusion.value_per_conversion`` (a constant) unless told otherwise, so a segment-aware
strategy can learn which categories sell dear.
"""
from __future__ import annotations

import argparse
import datetime as dt

from pipeline.config import load_config
from pipeline.samples.build import build_samples
from pipeline.samples.labels import backfill_dates
from pipeline.scoring.evaluate import evaluate_fusion
from pipeline.scoring.gates import train_fusion_gate
from pipeline.scoring.score import score
from pipeline.scoring.weights import compute_fusion_weights
from pipeline.spark import get_spark
from pipeline.synth.generate import generate
from pipeline.training.train import train_model

WORLD = ["synth.days=14", "training.num_proc=1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    cfg = load_config(args.conf, [*WORLD, *args.overrides])
    day = lambda n: cfg.synth.start_date + dt.timedelta(days=n - 1)  # noqa: E731  (day(1) = 10-01)
    generate(cfg, progress=False)
    spark = get_spark(cfg, app_name="bench-fusion")
    build_samples(spark, cfg, backfill_dates(day(1), day(cfg.synth.days), cfg.labels), "backfill")
    print(train_model(spark, cfg, day(1), day(3), model_name="esmm", progress=False).line())
    for n in range(4, 11):
        print(score(spark, cfg, day(n)).line())
    print(compute_fusion_weights(spark, cfg, day(10)).line())
    print(train_fusion_gate(spark, cfg, day(9)).line())
    print(evaluate_fusion(spark, cfg, day(10)).text())


if __name__ == "__main__":
    main()
