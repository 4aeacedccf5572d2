"""The ``pipeline`` command. Each sub-command loads the conf, then calls one library function.

Errors caused by usage or input (conf, dates, data) print one line, ``pipeline <command>: error:
...``, and exit with status 2; a run that failed for another reason (``RunFailure``: a rank died,
a time limit, a lock held by another run) prints one line, ``pipeline <command>: failed: ...``,
and exits with status 1; anything else is a bug and keeps its traceback.

Standard output is the command's result (a one-line summary, a table, JSON); log records go to
standard error (``pipeline.console``: ``-v``, ``-q``, ``--log-format text|json``). build-samples,
train and score take ``--dry-run``: what they would read and write, nothing written
(``pipeline.dry_run``).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import os
import sys
from typing import Callable, Optional, Sequence

import yaml

from pipeline import __version__
from pipeline.config import Config, load_config
from pipeline.confload import to_dict
from pipeline.console import FORMAT_ENV, FORMATS, configure_logging, report_error
from pipeline.dates import date_range, parse_date
from pipeline.errors import PipelineError, RunFailure
from pipeline.models.registry import MODELS

EXIT_USER_ERROR = 2
EXIT_RUN_FAILED = 1
DATED_COMMANDS = ("build-samples", "train")
DRY_RUN_COMMANDS = ("build-samples", "train", "score")
ONE_DATE_COMMANDS = ("run", "plan", "score", "top-scores", "fusion-weights", "fusion-train", "fusion-eval")  # --date D only


def _generate(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.synth.generate import generate

    print(generate(cfg).line(cfg))
    return 0


def _build_samples(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.samples.build import build_nightly, build_samples
    from pipeline.samples.labels import backfill_dates
    from pipeline.spark import get_spark

    if args.date:
        day = parse_date(args.date, "--date")
        spark = get_spark(cfg, app_name="mtrank-build-samples")
        if args.dry_run:
            from pipeline import dry_run

            print(dry_run.build_samples(spark, cfg, day=day).text())
        else:
            print(build_nightly(spark, cfg, day).line())
    elif args.start and args.end:
        start, end = parse_date(args.start, "--start"), parse_date(args.end, "--end")
        date_range(start, end)  # rejects end < start
        spark = get_spark(cfg, app_name="mtrank-build-samples")
        if args.dry_run:
            from pipeline import dry_run

            print(dry_run.build_samples(spark, cfg, start=start, end=end).text())
        else:
            print(build_samples(spark, cfg, backfill_dates(start, end, cfg.labels), "backfill").line())
    else:
        raise PipelineError("give --date D, or --start D1 with --end D2")
    return 0


def _train(cfg: Config, args: argparse.Namespace) -> int:
    model = args.model
    if args.date and not (args.start or args.end):
        from pipeline.plan import night_model, training_window

        start, end = training_window(cfg, parse_date(args.date, "--date"))
        model = model or night_model(cfg)
    elif args.start and args.end and not args.date:
        start, end = parse_date(args.start, "--start"), parse_date(args.end, "--end")
        date_range(start, end)  # rejects end < start
    else:
        raise PipelineError("give --date D (the window of night D), or --start D1 with --end D2 (the training days)")
    from pipeline.spark import get_spark
    from pipeline.training.train import train_model

    spark = get_spark(cfg, app_name="mtrank-train")
    num_proc = args.num_proc or cfg.training.num_proc
    if args.dry_run:
        from pipeline import dry_run

        print(dry_run.train(spark, cfg, start, end, model_name=model, num_proc=num_proc,
                            promote=not args.no_promote).text())
        return 0
    summary = train_model(spark, cfg, start, end, model_name=model, num_proc=num_proc, promote=not args.no_promote)
    print(summary.line())
    return 0


def _one_date(args: argparse.Namespace) -> dt.date:
    """``--date``, validated before any session starts."""
    if not args.date:
        raise PipelineError("give --date D")
    return parse_date(args.date, "--date")


def _run(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.nightly import run_nightly
    from pipeline.spark import get_spark

    date = _one_date(args)
    summary = run_nightly(get_spark(cfg, app_name="mtrank-run"), cfg, date)
    print(summary.table())
    print(summary.line())
    summary.raise_for_failure()
    return 0


def _plan(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.plan import plan_night
    from pipeline.registry import has_champion
    from pipeline.spark import get_spark

    date = _one_date(args)
    plan = plan_night(cfg, date, has_champion(lambda: get_spark(cfg, app_name="mtrank-plan"), cfg))
    print(plan.line(), file=sys.stderr)  # for people; stdout is the JSON alone, for the DAG
    print(plan.to_json())
    return 0


def _score(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.registry import CHAMPION
    from pipeline.scoring.score import score
    from pipeline.spark import get_spark

    date = _one_date(args)
    spark = get_spark(cfg, app_name="mtrank-score")
    if args.dry_run:
        from pipeline import dry_run

        print(dry_run.score(spark, cfg, date, model_id=args.model_id or CHAMPION).text())
        return 0
    print(score(spark, cfg, date, model_id=args.model_id or CHAMPION).line())
    return 0


def _promote(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.registry import promote
    from pipeline.spark import get_spark

    print(promote(get_spark(cfg, app_name="mtrank-promote"), cfg, args.model_id).line())
    return 0


def _models(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.registry import models_frame
    from pipeline.spark import get_spark

    frame = models_frame(get_spark(cfg, app_name="mtrank-models"), cfg)
    if frame is None or frame.empty:
        print(f"no models registered in {cfg.table_path('models')} yet; run pipeline train first")
        return 0
    print(f"{len(frame)} models in {cfg.table_path('models')}, newest first:")
    print(frame.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


def _top_scores(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.scoring.query import top_scores
    from pipeline.spark import get_spark

    date = _one_date(args)
    frame = top_scores(get_spark(cfg, app_name="mtrank-top-scores"), cfg, date, args.k)
    print(f"top {len(frame)} fused scores of {date}, read back from {cfg.table_path('scores')}:")
    print(frame.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


def _dated_job(module: str, function: str, show: str = "line") -> Callable[[Config, argparse.Namespace], int]:
    """The handler of a command that runs ``module.function(spark, cfg, date)`` on its ``--date``
    and prints the summary's ``show()``; the module is imported when the command runs."""
    def handler(cfg: Config, args: argparse.Namespace) -> int:
        from pipeline.spark import get_spark

        date = _one_date(args)
        job = getattr(importlib.import_module(module), function)
        print(getattr(job(get_spark(cfg, app_name=f"mtrank-{args.command}"), cfg, date), show)())
        return 0

    return handler


def _report(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.report import build_report
    from pipeline.spark import get_spark

    summary = build_report(get_spark(cfg, app_name="mtrank-report"), cfg, args.out)
    print(summary.line())
    print(f"open {os.path.abspath(summary.path)} in a browser (one self-contained file)")
    from pipeline.tracking import ui_command

    print(ui_command(cfg))
    return 0


def _import_aliccp(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.aliccp.importer import import_aliccp
    from pipeline.aliccp.parse import SplitDays
    from pipeline.spark import get_spark

    source = args.source or cfg.aliccp.source
    if not source:
        raise PipelineError("give --source DIR (the folder of the Ali-CCP csv files) or set aliccp.source")
    days = SplitDays(start=cfg.aliccp.start_date, train_days=cfg.aliccp.train_days, test_days=cfg.aliccp.test_days)
    splits = [args.split] if args.split else ["train", "test"]
    print(import_aliccp(get_spark(cfg, app_name="mtrank-import-aliccp"), cfg, source, days=days, splits=splits).line())
    return 0


def _truth(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.synth.summary import truth_summary

    print(truth_summary(cfg.truth_path))
    return 0


def _spark_info(cfg: Config, args: argparse.Namespace) -> int:
    from pipeline.spark import get_spark, session_facts

    for key, value in session_facts(get_spark(cfg)).items():
        print(f"{key}: {value}")
    return 0


def _show_config(cfg: Config, args: argparse.Namespace) -> int:
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    return 0


COMMANDS: dict[str, tuple[str, Callable[[Config, argparse.Namespace], int]]] = {
    "run": ("the nightly chain for one date: build-samples, train when due, score, report", _run),
    "plan": ("print the plan of one night as JSON: build-samples, train (whether due, window, model), score, report", _plan),
    "build-samples": ("raw logs -> entire-space samples, quarantine and a runs row (Delta)", _build_samples),
    "train": ("train one model on a date range of samples, evaluate and register it", _train),
    "score": ("score a day's rows with a registered model, fuse, and write the scores partition", _score),
    "models": ("print the models registry, newest first: window, metrics, alias and gate decision", _models),
    "promote": ("make a registered model the champion that score uses, bypassing the gate", _promote),
    "top-scores": ("print the highest fused scores of a day, read back from the scores table", _top_scores),
    "fusion-weights": ("compute the dynamic fusion's segment weights from final, scored days",
                       _dated_job("pipeline.scoring.weights", "compute_fusion_weights")),
    "fusion-train": ("train the learned fusion gate on a final, scored day",
                     _dated_job("pipeline.scoring.gates", "train_fusion_gate")),
    "fusion-eval": ("compare the fusion strategies offline (NDCG@K, revenue@K) on a final, scored day",
                    _dated_job("pipeline.scoring.evaluate", "evaluate_fusion", "text")),
    "report": ("write one self-contained HTML report: data quality, label rates, training, models, scores", _report),
    "import-aliccp": ("the public Ali-CCP dataset (ESMM paper) -> samples, quarantine and a runs row", _import_aliccp),
    "generate": ("write synthetic raw logs and their truth table", _generate),
    "truth": ("summarize the generated truth: label rates, oracle AUCs, dirt", _truth),
    "show-config": ("print the effective configuration (defaults, file, --set)", _show_config),
    "spark-info": ("start the Spark session the jobs use and print its key settings", _spark_info),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline", description="Multi-task ranking pipeline.")
    parser.add_argument("--version", action="version", version=f"pipeline (mtrank) {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, _) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--conf", metavar="FILE", help="YAML conf file (default: the embedded local defaults)")
        sub.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                         help="override one conf key, e.g. --set synth.days=3 (repeatable)")
        loudness = sub.add_mutually_exclusive_group()
        loudness.add_argument("-v", "--verbose", action="store_const", const="DEBUG", dest="log_level",
                              help="log debug messages too")
        loudness.add_argument("-q", "--quiet", action="store_const", const="WARNING", dest="log_level",
                              help="log warnings and errors only (the result is still printed)")
        sub.add_argument("--log-format", choices=FORMATS,
                         help=f"log records as text or as JSON lines (default: ${FORMAT_ENV}, else text)")
        if name in DRY_RUN_COMMANDS:
            sub.add_argument("--dry-run", action="store_true",
                             help="print what would be read and written, and write nothing")
        if name in DATED_COMMANDS:
            if name == "build-samples":
                sub.add_argument("--date", metavar="YYYY-MM-DD", help="nightly run for this date")
            if name == "train":
                sub.add_argument("--date", metavar="YYYY-MM-DD", help="train the window and model of this night's plan")
            sub.add_argument("--start", metavar="YYYY-MM-DD", help="first date (build-samples: backfill; train: first training day)")
            sub.add_argument("--end", metavar="YYYY-MM-DD", help="last date (build-samples: backfill; train: last training day)")
        if name in ONE_DATE_COMMANDS:
            sub.add_argument("--date", metavar="YYYY-MM-DD", help="the day to score, compute, train or evaluate")
        if name == "score":
            sub.add_argument("--model-id", metavar="M",
                             help="a registered model id, champion or latest (default: champion)")
        if name == "promote":
            sub.add_argument("model_id", metavar="MODEL_ID", help="a registered model id (see pipeline models)")
        if name == "top-scores":
            sub.add_argument("--k", type=int, default=10, help="how many rows (default 10)")
        if name == "import-aliccp":
            sub.add_argument("--source", metavar="DIR", help="folder of the Ali-CCP files (default: aliccp.source)")
            sub.add_argument("--split", choices=["train", "test"], help="import one split only (default: both)")
        if name == "report":
            sub.add_argument("--out", metavar="PATH", help="where to write the HTML file (default: report.path)")
        if name == "train":
            sub.add_argument("--model", choices=list(MODELS), help="model to train (default: model.name)")
            sub.add_argument("--num-proc", type=int, help="processes (default: training.num_proc)")
            sub.add_argument("--no-promote", action="store_true",
                             help="register a candidate only, without the promotion gate (experiments, backfills)")
    return parser


LOCKED_COMMANDS = ("run", "build-samples", "train", "score")  # they write tables for a date


def _one_run_at_a_time(cfg: Config, args: argparse.Namespace):
    """The lock of the command and its date (``--date``, else ``--end``); see pipeline/io/lock.py."""
    key = getattr(args, "date", None) or getattr(args, "end", None)
    if args.command not in LOCKED_COMMANDS or not key or getattr(args, "dry_run", False):
        return contextlib.nullcontext()
    from pipeline.io.lock import HadoopFiles, job_lock

    def remote_files() -> HadoopFiles:
        from pipeline.spark import get_spark

        return HadoopFiles(get_spark(cfg))

    day = parse_date(key, "--date" if getattr(args, "date", None) else "--end")
    return job_lock(cfg.storage.root, args.command, day.isoformat(), wait_seconds=cfg.storage.lock_wait_seconds,
                    files_for_remote=remote_files)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        configure_logging(args.log_level, args.log_format)
        cfg = load_config(args.conf, args.overrides)
        with _one_run_at_a_time(cfg, args):
            return COMMANDS[args.command][1](cfg, args)
    except PipelineError as err:
        report_error(f"pipeline {args.command}: error: {err}")
        return EXIT_USER_ERROR
    except RunFailure as err:
        report_error(f"pipeline {args.command}: failed: {err}")
        return EXIT_RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
