"""The notebooks under notebooks/ run top to bottom on a tiny generated world.

Each notebook is executed in a fresh ipykernel (its own Spark JVM) with nbclient, its cell tagged
``parameters`` replaced by the world's settings; a cell that raises fails the test. The world:
five days of 2,000 exposures with five feature columns (Spark's fixed costs per job and per
feature dominate, not rows), an attribution window of one day, so the backfill to 10-05 leaves
10-01..10-03 final; the models train on 10-01 (validation 10-02, test 10-03) and 10-05 is scored.
The notebooks run in order, and a test runs the notebooks it depends on when run alone.
"""
from __future__ import annotations

import ast
import datetime as dt
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from pyspark.sql import functions as F

from pipeline.io import delta
from pipeline.synth.generate import generate

from tests.conftest import TEST_SPARK_SETTINGS
from tests.samples.conftest import backfill, make_cfg
from tests.worlds import TINY_MODEL, TINY_WORLD

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("01_samples_and_quality", "02_train_and_compare", "03_query_scores")
REQUIRES = {"03_query_scores": "02_train_and_compare"}  # 03 scores with the model 02 registers
CELL_TIMEOUT_S = 300

WORLD = ["synth.days=5", *TINY_WORLD, "features.categorical=[user_id,item_id,category,device]",
         "features.numeric=[price]", *TINY_MODEL, "training.epochs=2"]
START, END, TRAIN_END, SCORE_DATE = "2026-10-01", "2026-10-05", "2026-10-01", "2026-10-05"
MODELS = ["cvr_naive", "esmm"]  # cvr_naive cannot score: esmm becomes the champion that 03 uses
K = 3
DATABASE = "nbtest"


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("notebooks")
    cfg = make_cfg(root, *WORLD)
    generate(cfg, progress=False)
    backfill(spark, cfg, START, END)
    sets = [f"storage.root={root}", *TEST_SPARK_SETTINGS, *WORLD]
    parameters = {
        "01_samples_and_quality": {"CONF": None, "SETS": sets, "START": START, "END": END},
        "02_train_and_compare": {"CONF": None, "SETS": sets, "START": START, "END": TRAIN_END,
                                 "MODELS": MODELS, "NUM_PROC": 1},
        "03_query_scores": {"CONF": None, "SETS": sets, "DATE": SCORE_DATE, "K": K, "MODEL_ID": "champion",
                            "DATABASE": DATABASE},
    }
    return cfg, parameters


@pytest.fixture(scope="module")
def executed(world):
    """``executed(name)``: the notebook run with the world's parameters (once per module). The
    notebooks run one after the other in one kernel, its namespace reset before each: each ends
    with ``spark.stop()`` and the next one's session starts in the same JVM, as when a user runs
    them in turn in one Jupyter server."""
    _, parameters = world
    done: dict[str, nbformat.NotebookNode | Exception] = {}
    kernel = {}

    def run(name: str) -> nbformat.NotebookNode:
        if name not in done:
            try:
                if name in REQUIRES:
                    run(REQUIRES[name])
                nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
                set_parameters(nb, parameters[name])
                execute(nb, kernel)
                done[name] = nb
            except Exception as err:  # noqa: BLE001 (kept: a dependent test fails fast, without a rerun)
                done[name] = err
        if isinstance(done[name], Exception):
            raise done[name]
        return done[name]

    yield run
    if kernel:
        shut_down(kernel["km"])


def set_parameters(nb: nbformat.NotebookNode, values: dict) -> None:
    """Replaces the source of the cell tagged ``parameters`` with ``NAME = repr(value)`` lines;
    every name must be one the notebook defines there."""
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    defined = {target.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
               for target in node.targets if isinstance(target, ast.Name)}
    assert set(values) == defined, f"parameters {sorted(values)} != the notebook's {sorted(defined)}"
    cell.source = "\n".join(f"{name} = {value!r}" for name, value in values.items())


def execute(nb: nbformat.NotebookNode, kernel: dict | None = None) -> None:
    """Runs every cell in a python3 kernel started in notebooks/ (raises on a failing cell); its
    JVM starts with the short-lived JVM options (tests/jvm.py). With ``kernel`` (a dict), the
    kernel it holds, its namespace reset first, or a new one that it then holds."""
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", km=(kernel or {}).get("km"),
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    if kernel is None:
        client.execute(env=dict(os.environ))
        return
    nb.cells.insert(0, nbformat.v4.new_code_cell("%reset -f"))
    try:
        client.execute(env=dict(os.environ), cleanup_kc=False)
    finally:
        del nb.cells[0]
        kernel["km"] = client.km
        if client.kc is not None:
            client.kc.stop_channels()


def shut_down(km) -> None:
    """Shuts the kernel of ``execute(nb, kernel)`` down."""
    from jupyter_core.utils import run_sync

    run_sync(km.shutdown_kernel)(now=True)


def printed(nb: nbformat.NotebookNode) -> str:
    """Everything the cells printed or displayed as text."""
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and output.name == "stdout":
                texts.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                texts.append(output.data.get("text/plain", ""))
    return "\n".join(texts)


def images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {}) for cell in nb.cells for output in cell.get("outputs", []))


# ---------------------------------------------------------------------------------------------


def test_committed_notebooks_have_parameters_and_no_outputs():
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), name
        assert all(not c.outputs and c.execution_count is None for c in code), name
        assert code[-1].source.strip() == "spark.stop()", name  # each kernel's JVM ends with it


def test_the_kernel_runs_this_interpreter():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)")])
    execute(nb)
    assert printed(nb).strip() == sys.prefix  # .venv under .venv/bin/pytest


def test_samples_and_quality(executed):
    nb = executed("01_samples_and_quality")
    text = printed(nb)
    assert f"samples {START}..{END}: 5 dates, 10,000 exposures, 3 dates final" in text
    for source in ("exposures", "clicks", "conversions"):
        assert f"reconciliation {source}: 1 run(s)" in text and "NOT BALANCED" not in text
    assert images(nb) >= 2


def test_train_and_compare(spark, world, executed):
    cfg, _ = world
    nb = executed("02_train_and_compare")
    registry = delta.read_table(spark, cfg.table_path("models")).toPandas()
    assert sorted(registry.model_type) == sorted(MODELS)
    for model_id in registry.model_id:
        assert os.path.exists(os.path.join(cfg.artifacts_path, model_id, "history.json"))
    text = printed(nb)
    # The comparison's lines, read from the registry: one per model, the tasks it estimates.
    assert "\ncvr_naive: cvr AUC " in text and "\nesmm: ctr AUC " in text and "cvr_entire_space AUC" in text
    assert images(nb) >= 2


def test_query_scores(spark, world, executed):
    cfg, _ = world
    nb = executed("03_query_scores")
    date = dt.date.fromisoformat(SCORE_DATE)
    scores = delta.read_table(spark, cfg.table_path("scores")).where(F.col("dt") == F.lit(date))
    samples = delta.read_table(spark, cfg.table_path("samples")).where(F.col("dt") == F.lit(date))
    assert scores.count() == samples.count() > 0
    assert {row.model_type for row in delta.read_table(spark, cfg.table_path("models"))
            .join(scores.select("model_id").distinct(), "model_id", "inner").collect()} == {"esmm"}
    text = printed(nb)
    assert f"tables in {DATABASE}: models, samples, scores" in text
    assert f"top {K} items per user on {SCORE_DATE}: " in text
    assert os.path.isdir(os.path.join(cfg.storage.root, "_warehouse", f"{DATABASE}.db"))
