"""Training throughput: the Petastorm reader against in-memory tensors, and 1 against 2 processes.

    .venv/bin/python bench/train.py [--conf conf/local.yaml] [--set key=value ...] [--model esmm]
                                    [--backend horovod] [--backend torch_distributor]

Generates the conf's synthetic world and builds its samples (not timed), then trains the model on
the demo split (four days, validation and test on the next two) three ways, same epochs and
batches:

    in-memory    the training loop over tensors already in memory (the reference: no reader)
    petastorm 1  the default data path in this process: the pinned snapshot's files via Petastorm
    petastorm 2  the same with 2 processes started as Spark tasks by each ``--backend``
                 (default: horovod, horovod.spark.run; torch_distributor: Spark's TorchDistributor)

and prints training samples/s (training steps only; validation and start-up excluded) and the
ratios petastorm 1 / in-memory (close to 1: the reader is not the bottleneck) and 2 / 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt

from pipeline.config import load_config
from pipeline.samples.build import build_samples
from pipeline.samples.labels import backfill_dates
from pipeline.spark import get_spark
from pipeline.synth.generate import generate
from pipeline.training.backends import BACKENDS
from pipeline.training.dataset import build_training_set, load_arrays, split_dates, to_tensors
from pipeline.training.process import model_inputs, train_in_memory
from pipeline.training.train import train_model


def in_memory_samples_per_second(spark, cfg, name: str, start: dt.date, end: dt.date) -> float:
    """The same loop over in-memory tensors (``train_in_memory``): no reader at all."""
    conf = cfg.training
    split = split_dates(start, end, conf.validation_days, conf.test_days)
    training_set = build_training_set(spark, cfg, split)
    train, valid = (to_tensors(load_arrays(spark, training_set, days)) for days in (split.train, split.validation))
    spec = dataclasses.replace(cfg.model, name=name)
    _, result = train_in_memory(spec, model_inputs(training_set.encoders), training_set.priors, conf, train, valid)
    return result.samples_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--model", default="esmm")
    parser.add_argument("--backend", action="append", dest="backends", choices=sorted(BACKENDS),
                        help="training.backend of the 2-process run (repeat to compare; default: horovod)")
    args = parser.parse_args()
    # A fixed number of epochs, so that every path runs the same steps.
    cfg = load_config(args.conf, [*args.overrides, "training.patience=100"])
    generate(cfg, progress=False)
    spark = get_spark(cfg, app_name="bench-train")
    first = cfg.synth.start_date
    build_samples(spark, cfg, backfill_dates(first, first + dt.timedelta(days=cfg.synth.days - 1), cfg.labels),
                  "backfill")
    start, end = first, first + dt.timedelta(days=3)

    rates = {"in-memory": in_memory_samples_per_second(spark, cfg, args.model, start, end)}
    summary = train_model(spark, cfg, start, end, model_name=args.model, num_proc=1, progress=False)
    rates["petastorm 1"] = summary.samples_per_second
    for backend in args.backends or ["horovod"]:
        on_backend = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, backend=backend))
        summary = train_model(spark, on_backend, start, end, model_name=args.model, num_proc=2, progress=False)
        rates[f"petastorm 2 {backend}"] = summary.samples_per_second
    width = max(map(len, rates))
    print(f"{'path':<{width}} {'samples/s':>10}")
    for path, rate in rates.items():
        print(f"{path:<{width}} {rate:>10,.0f}")
    print(f"petastorm 1 / in-memory = {rates['petastorm 1'] / rates['in-memory']:.2f}; " + "; ".join(
        f"{path} / petastorm 1 = {rate / rates['petastorm 1']:.2f}" for path, rate in rates.items()
        if path.startswith("petastorm 2")))


if __name__ == "__main__":
    main()
