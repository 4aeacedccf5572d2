"""The report's figures: each function draws one matplotlib figure and returns it as a base64 PNG.

Figures are drawn on the Agg canvas directly (no ``pyplot``), so importing this module changes no
global backend and needs no display.
"""
from __future__ import annotations

import base64
import io
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.logs.schema import SOURCES
from pipeline.tables import COUNTS

DPI = 80
TASK_LABELS = {"ctr": "CTR (all exposures)", "cvr": "CVR (clicked)", "ctcvr": "CTCVR (all exposures)"}


def to_png(figure: Figure) -> str:
    """The figure as a base64-encoded PNG."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(columns: int, rows: int = 1, width: float = 4.2, height: float = 3.2) -> tuple[Figure, np.ndarray]:
    """A figure with a grid of axes, returned flat."""
    figure = Figure(figsize=(width * columns, height * rows), dpi=DPI, layout="constrained")
    return figure, np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())


def run_counts_plot(runs: pd.DataFrame) -> str:
    """Per source, the read/accepted/duplicate/quarantined/late/out-of-range counts of each run.

    Args:
        runs: one row per run, oldest first: ``run_date`` and ``<source>_<count>`` columns.
    """
    figure, axes = _figure(len(SOURCES))
    x = np.arange(len(runs))
    labels = [str(day) for day in runs["run_date"]]
    for ax, source in zip(axes, SOURCES):
        for count in COUNTS:
            ax.plot(x, runs[f"{source}_{count}"].astype(float), marker="o", label=count)
        ax.set_yscale("symlog", linthresh=1)  # thousands read next to a handful late
        ax.set_xticks(x, labels, rotation=45, ha="right")
        ax.set(title=source, xlabel="run date", ylabel="records")
    axes[0].legend(fontsize="small")
    figure.suptitle("Records per run and source")
    return to_png(figure)


def quarantine_plot(counts: pd.DataFrame) -> str:
    """Quarantined records per raw event date, stacked by source and reason.

    Args:
        counts: ``dt``, ``source``, ``reason``, ``records`` rows.
    """
    table = (counts.assign(kind=counts["source"] + ": " + counts["reason"])
             .pivot_table(index="dt", columns="kind", values="records", aggfunc="sum", fill_value=0))
    figure, (ax,) = _figure(1, width=9.0, height=3.6)
    x, bottom = np.arange(len(table)), np.zeros(len(table))
    colors = colormaps["tab20"]  # more kinds than the default cycle's ten colors
    for i, kind in enumerate(table.columns):
        ax.bar(x, table[kind], bottom=bottom, color=colors(i % colors.N), label=kind)
        bottom = bottom + table[kind].to_numpy(dtype=float)
    ax.set_xticks(x, [str(day) for day in table.index], rotation=45, ha="right")
    ax.set(title="Quarantined records by reason", xlabel="raw event date (dt)", ylabel="records")
    figure.legend(loc="outside right upper", fontsize="small")
    return to_png(figure)


def label_rates_plot(rates: pd.DataFrame) -> str:
    """Samples per exposure date, and the CTR, CVR and CTCVR of each date.

    Args:
        rates: ``dt``, ``rows``, ``ctr``, ``cvr``, ``ctcvr`` rows (``gather.label_rates``).
    """
    figure, (rows_ax, rates_ax) = _figure(2, width=4.8)
    x, labels = np.arange(len(rates)), [str(day) for day in rates["dt"]]
    rows_ax.bar(x, rates["rows"], color="tab:gray", label="samples")
    rows_ax.set(title="Samples per date", xlabel="exposure date (dt)", ylabel="samples")
    rows_ax.legend(fontsize="small")
    for name, label in (("ctr", "CTR = clicks / samples"), ("cvr", "CVR = conversions / clicks"),
                        ("ctcvr", "CTCVR = conversions / samples")):
        rates_ax.plot(x, rates[name], marker="o", label=label)
    rates_ax.set(title="Label rates per date", xlabel="exposure date (dt)", ylabel="rate")
    rates_ax.legend(fontsize="small")
    for ax in (rows_ax, rates_ax):
        ax.set_xticks(x, labels, rotation=45, ha="right")
    return to_png(figure)


def best_epoch(history: Sequence[Mapping]) -> float:
    """When the validation score was lowest (the weights training keeps), in epochs."""
    return min(history, key=lambda row: row["score"])["epoch"]


def loss_curves_plot(histories: Mapping[str, Sequence[Mapping]]) -> str:
    """Train (solid) and validation (dashed) loss per validation and loss key, one panel per model.

    Args:
        histories: panel title (model type and id, may span lines) -> the artifact's ``history.json`` rows.
    """
    columns = min(3, len(histories))
    figure, axes = _figure(columns, -(-len(histories) // columns), width=4.6)
    for ax, (title, history) in zip(axes, histories.items()):
        epochs = [row["epoch"] for row in history]
        for i, key in enumerate(history[0]["train"]):
            color = f"C{i}"
            ax.plot(epochs, [row["train"][key] for row in history], marker="o", color=color, label=f"{key} train")
            ax.plot(epochs, [row["validation"][key] for row in history], marker="s", linestyle="--",
                    color=color, label=f"{key} validation")
        ax.axvline(best_epoch(history), color="gray", linestyle=":", label="best epoch")
        ax.set(xlabel="epoch", ylabel="loss")
        ax.set_title(title, fontsize="small")
        ax.legend(fontsize="x-small")
    for ax in axes[len(histories):]:
        ax.set_axis_off()
    return to_png(figure)


def roc_reliability_plot(metrics: Mapping[str, Mapping]) -> str:
    """ROC curves and reliability diagrams of the tasks in ``metrics`` that store them.

    Args:
        metrics: task -> its ``binary_metrics`` (``roc`` and ``reliability`` row lists, ``auc``).
    """
    figure, (roc_ax, rel_ax) = _figure(2)
    for task, label in TASK_LABELS.items():
        got = metrics.get(task, {})
        if got.get("roc"):
            roc = pd.DataFrame(got["roc"])
            roc_ax.plot(roc["fpr"], roc["tpr"], label=f"{label}, AUC {got['auc']:.3f}")
        if got.get("reliability"):
            bins = pd.DataFrame(got["reliability"])
            rel_ax.plot(bins["mean_prediction"], bins["observed_rate"], marker="o", label=label)
    roc_ax.plot([0, 1], [0, 1], color="gray", linestyle=":", label="chance")
    roc_ax.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    limit = max([1e-3, *rel_ax.get_xlim(), *rel_ax.get_ylim()])
    rel_ax.plot([0, limit], [0, limit], color="gray", linestyle=":", label="perfectly calibrated")
    rel_ax.set(title="Reliability (equal-count bins)", xlabel="mean prediction", ylabel="observed rate")
    for ax in (roc_ax, rel_ax):
        ax.legend(fontsize="small")
    return to_png(figure)


def score_histograms_plot(scores: Mapping[str, np.ndarray], title: str) -> str:
    """A histogram of the scores of each fusion strategy, one panel each.

    Args:
        scores: panel title (strategy) -> [N] scores; NaN left out.
        title: the figure's title (the scored day).
    """
    figure, axes = _figure(len(scores))
    for ax, (strategy, values) in zip(axes, scores.items()):
        finite = values[np.isfinite(values)]
        ax.hist(finite, bins=50, color="tab:blue", label=f"{len(finite):,} rows")
        if len(finite):
            ax.set_yscale("log")  # the long upper tail holds the few rows ranking cares about
        ax.set(title=strategy, xlabel="fused score", ylabel="rows")
        ax.legend(fontsize="small")
    figure.suptitle(title)
    return to_png(figure)
