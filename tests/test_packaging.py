"""pyproject.toml and the scripts that read it agree (the build itself is `make package`, too slow here)."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pipeline

REPO = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def pins() -> dict[str, str]:
    return dict(d.split("==") for d in pyproject()["project"]["dependencies"] if "==" in d)


def test_version_and_package_data_come_from_the_package():
    project = pyproject()
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pipeline.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", pipeline.__version__)
    for name in project["tool"]["setuptools"]["package-data"]["pipeline"]:
        assert (REPO / "pipeline" / name).is_file()
    assert project["project"]["scripts"] == {"pipeline": "pipeline.cli:main"}


def test_bootstrap_builds_the_pinned_horovod_against_the_pinned_torch():
    bootstrap = (REPO / ".ci" / "bootstrap.sh").read_text(encoding="utf-8")
    assert re.search(r"^HOROVOD_VERSION=(\S+)$", bootstrap, re.M).group(1) == pins()["horovod"]
    assert re.search(r"^TORCH_VERSION=(\S+)$", bootstrap, re.M).group(1) == pins()["torch"]
    # The venv is rebuilt when the dependency list changes.
    assert "cat pyproject.toml .ci/bootstrap.sh | sha1sum" in bootstrap
    assert not (REPO / "setup.py").exists()


def test_make_package_builds_then_checks_the_archive():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\npackage: env\n", 1)[1].split("\n\n", 1)[0]
    assert recipe.split("\n") == ["\t@bash .ci/package.sh", "\t@bash .ci/check_package.sh"]
