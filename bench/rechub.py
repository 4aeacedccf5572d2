"""Training throughput and AUC against torch-rechub's ESMM and MMoE on the same rows and dims.

    .venv/bin/python bench/rechub.py [--world demo] [--seed 1] [--models esmm mmoe] [--repeats 3]
                                     [--threads 2] [--set training.batch_size=4096 ...]

Needs the ``bench`` extra (torch-rechub). Simulates one world of the quality suite
(``pipeline.quality``; not timed) and encodes it with the pipeline's encoders, then trains, in
turn and ``--repeats`` times, each model two ways on the same training rows:

    mtrank   the pipeline's loop over in-memory batches (``train_in_memory``), conf defaults
    rechub   torch-rechub's model and its ``MTLTrainer.train_one_epoch`` over the same batches,
             already cut and in memory (no DataLoader: the fastest way to feed it), Adam at the
             dense learning rate of the conf, same batch size and epochs; the epoch with the best
             mean validation AUC is kept

Same dims: embeddings of ``model.embedding_dim`` per categorical field; ESMM towers of
``bottom_hidden + tower_hidden``, MMoE ``num_experts`` experts of ``expert_hidden`` and towers of
``tower_hidden``. torch-rechub's ESMM takes categorical fields only (its towers read F x D
inputs); its MMoE gets the numerics too. Its MMoE trains the second head on conversions over all
exposures (as its examples do), so that head estimates pCTCVR.

Prints training samples/s (training steps only: validation excluded) of each run, then per model
the median samples/s of both, the ratio mtrank / rechub, and the CTR and CTCVR AUC of each on the
world's test day.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import tempfile
import time

os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.config import load_config  # noqa: E402
from pipeline.quality.suite import WorldData, prepare_world, world_config  # noqa: E402
from pipeline.quality.worlds import WORLDS  # noqa: E402
from pipeline.spark import get_spark  # noqa: E402
from pipeline import metrics  # noqa: E402
from pipeline.training.dataset import batches, to_tensors  # noqa: E402
from pipeline.training.evaluate import predict  # noqa: E402
from pipeline.training.process import model_inputs, train_in_memory  # noqa: E402

# torch-rechub's output columns and the labels each is trained on, per model.
RECHUB_TASKS = {"esmm": ("cvr", "ctr", "ctcvr"), "mmoe": ("ctr", "ctcvr")}
LABEL_OF = {"cvr": "conversion", "ctr": "click", "ctcvr": "conversion"}


def ours(cfg, data: WorldData, name: str) -> tuple[float, dict[str, float]]:
    """mtrank: (training samples/s, test AUC by task)."""
    spec = dataclasses.replace(cfg.model, name=name)
    train, valid = (to_tensors(data.arrays[split]) for split in ("train", "validation"))
    model, result = train_in_memory(spec, model_inputs(data.encoders), data.priors, cfg.training, train, valid)
    test = data.arrays["test"]
    p = predict(model, batches(to_tensors(test), 8192, shuffle=False))
    return result.samples_per_second, {"ctr": metrics.auc(test["click"], p["p_ctr"]),
                                       "ctcvr": metrics.auc(test["conversion"], p["p_ctcvr"])}


def rechub_model(cfg, data: WorldData, name: str):
    """torch-rechub's network of the same dims, and its feature names."""
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import ESMM, MMOE

    spec = cfg.model
    sparse = [SparseFeature(f"c{i}", vocab_size=n, embed_dim=spec.embedding_dim)
              for i, n in enumerate(data.encoders.cardinalities)]
    dense = [DenseFeature(f"n{i}") for i in range(len(data.encoders.numeric))]
    tower = {"dims": [*spec.bottom_hidden, *spec.tower_hidden], "dropout": spec.dropout}
    if name == "esmm":
        half = len(sparse) // 2
        return ESMM(sparse[:half], sparse[half:], cvr_params=tower, ctr_params=tower)
    return MMOE(sparse + dense, ["classification", "classification"], n_expert=spec.num_experts,
                expert_params={"dims": list(spec.expert_hidden), "dropout": spec.dropout},
                tower_params_list=[{"dims": list(spec.tower_hidden), "dropout": spec.dropout}] * 2)


def rechub_batches(arrays: dict[str, np.ndarray], tasks: tuple[str, ...], batch_size: int, *, shuffle: bool,
                   seed: int = 0, epoch: int = 0) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """The rows as torch-rechub's (feature dict, [B, T] labels) batches, cut before timing."""
    out = []
    for batch in batches(to_tensors(arrays), batch_size, shuffle=shuffle, seed=seed, epoch=epoch):
        x = {f"c{i}": batch["cat"][:, i] for i in range(batch["cat"].shape[1])}
        x.update({f"n{i}": batch["num"][:, i] for i in range(batch["num"].shape[1])})
        out.append((x, torch.stack([batch[LABEL_OF[t]] for t in tasks], dim=1)))
    return out


def theirs(cfg, data: WorldData, name: str) -> tuple[float, dict[str, float]]:
    """torch-rechub: (training samples/s, test AUC by task)."""
    from torch_rechub.trainers import MTLTrainer

    conf, tasks = cfg.training, RECHUB_TASKS[name]
    torch.manual_seed(conf.seed)
    model = rechub_model(cfg, data, name)
    trainer = MTLTrainer(model, ["classification"] * len(tasks), optimizer_fn=torch.optim.Adam,
                         optimizer_params={"lr": conf.learning_rate, "weight_decay": 0.0}, n_epoch=conf.epochs)
    valid = rechub_batches(data.arrays["validation"], tasks, 8192, shuffle=False)
    best, best_state, rows, seconds = -1.0, None, 0, 0.0
    for epoch in range(1, conf.epochs + 1):
        train = rechub_batches(data.arrays["train"], tasks, conf.batch_size, shuffle=True, seed=conf.seed, epoch=epoch)
        started = time.perf_counter()
        trainer.train_one_epoch(train)
        seconds += time.perf_counter() - started
        rows += len(data.arrays["train"]["click"])
        score = float(np.mean(trainer.evaluate(model, valid)))
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    test = data.arrays["test"]
    with torch.no_grad():
        p = torch.cat([model(x) for x, _ in rechub_batches(test, tasks, 8192, shuffle=False)]).numpy()  # [N, T]
    return rows / seconds, {t: metrics.auc(test[LABEL_OF[t]], p[:, tasks.index(t)]) for t in ("ctr", "ctcvr")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="demo", choices=list(WORLDS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=list(RECHUB_TASKS), choices=list(RECHUB_TASKS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, the same for both")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spark = get_spark(load_config(None, ["spark.conf.spark.ui.enabled=false"]), app_name="bench-rechub")
    spark.sparkContext.setLogLevel("ERROR")
    cfg = world_config(WORLDS[args.world], args.seed, args.overrides)
    with tempfile.TemporaryDirectory(prefix="mtrank-bench-") as workdir:
        data = prepare_world(spark, cfg, workdir)
    print(f"{args.world} world, seed {args.seed}: {len(data.arrays['train']['click']):,} training rows, "
          f"batch {cfg.training.batch_size}, {cfg.training.epochs} epochs, {args.threads} torch threads", flush=True)
    runs = {(name, who): [] for name in args.models for who in ("mtrank", "rechub")}
    for repeat in range(1, args.repeats + 1):
        for name in args.models:  # alternate the two, so that load on the machine hits both alike
            for who, train in (("mtrank", ours), ("rechub", theirs)):
                rate, aucs = train(cfg, data, name)
                runs[name, who].append((rate, aucs))
                print(f"run {repeat} {name:<5} {who:<7} {rate:>10,.0f} samples/s  CTR AUC {aucs['ctr']:.4f}  "
                      f"CTCVR AUC {aucs['ctcvr']:.4f}", flush=True)
    print(f"\n{'model':<6} {'mtrank/s':>10} {'rechub/s':>10} {'ratio':>6}  {'CTR AUC mtrank / rechub':>24}"
          f"  {'CTCVR AUC mtrank / rechub':>26}")
    for name in args.models:
        rate = {who: statistics.median(r for r, _ in runs[name, who]) for who in ("mtrank", "rechub")}
        auc = {(who, t): statistics.mean(a[t] for _, a in runs[name, who]) for who in ("mtrank", "rechub")
               for t in ("ctr", "ctcvr")}
        print(f"{name:<6} {rate['mtrank']:>10,.0f} {rate['rechub']:>10,.0f} {rate['mtrank'] / rate['rechub']:>6.2f}"
              f"  {auc['mtrank', 'ctr']:>11.4f} / {auc['rechub', 'ctr']:.4f}"
              f"  {auc['mtrank', 'ctcvr']:>12.4f} / {auc['rechub', 'ctcvr']:.4f}")


if __name__ == "__main__":
    main()
