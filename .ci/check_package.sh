#!/usr/bin/env bash
# Checks what `make package` built (.ci/package.sh), as an executor sees it:
#   1. the code: every module of pipeline imports from dist/mtrank-<version>.zip alone (zipimport,
#      as Spark's --py-files), with .venv's dependencies, in isolated mode (no PYTHONPATH, no
#      current folder on sys.path), so nothing can come from this repository;
#   2. the dependencies with the code: the archive unpacked as ./env in an empty folder outside
#      the checkout, its python in isolated mode: torch, horovod.torch and pyspark come from the
#      unpacked folder, pipeline is not in it and imports from the zip. Unpacking 3.4 GB takes
#      minutes, so an archive that passed is not checked again: a stamp beside the cached copy
#      (package.sh's hard link) records it, and with it this script takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${MTRANK_CACHE:-$HOME/.cache/mtrank}
ARCHIVE=$(readlink -f "${ARCHIVE:-dist/mtrank-env.tar.gz}")
version=$(.venv/bin/python -c "import re; print(re.search(r'__version__ = \"([^\"]+)\"', open('pipeline/__init__.py').read()).group(1))")
ZIP=$(readlink -f "dist/mtrank-$version.zip")

started=$(date +%s)
env -u PYTHONPATH .venv/bin/python -I -c '
import importlib, os, pkgutil, sys
zip_path = sys.argv[1]
sys.path.insert(0, zip_path)  # as Spark adds a --py-files zip
import pipeline
names = [m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.")]
for name in ["pipeline", *names]:
    path = importlib.import_module(name).__file__
    assert path.startswith(zip_path + os.sep), f"{name} comes from {path}, not the zip"
print(f"[check-package] ok from {os.path.basename(zip_path)}: {1 + len(names)} modules of pipeline", pipeline.__version__)
' "$ZIP"

# The cached archive dist/mtrank-env.tar.gz is a hard link to, if it is one.
cached=$(find "$CACHE/envs" -maxdepth 1 -name '*.tar.gz' -samefile "$ARCHIVE" 2>/dev/null | head -1)
if [ -n "$cached" ] && [ -f "$cached.checked" ]; then
  echo "[check-package] $(basename "$cached") was checked unpacked on $(date -r "$cached.checked" +%F)" \
       "(delete $cached.checked to check it again)"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir "$work/env"
  tar -xzf "$ARCHIVE" -C "$work/env"
  (cd "$work" && env -u PYTHONPATH -u VIRTUAL_ENV ./env/bin/python -I -c '
import importlib.util, os, sys
import horovod, horovod.torch, pyspark, torch
here = os.path.realpath("env")
for module in (torch, horovod, pyspark):
    path = os.path.realpath(module.__file__)
    assert path.startswith(here + os.sep), f"{module.__name__} comes from {path}, not the archive"
assert importlib.util.find_spec("pipeline") is None, "the archive holds pipeline: it should come from the zip"
sys.path.insert(0, sys.argv[1])
import pipeline, pipeline.cli, pipeline.scoring.score
assert pipeline.__file__.startswith(sys.argv[1] + os.sep), pipeline.__file__
print(f"[check-package] ok from the unpacked archive: torch {torch.__version__}, horovod {horovod.__version__},",
      f"pyspark {pyspark.__version__}, python {sys.version.split()[0]}; pipeline {pipeline.__version__} from the zip")
' "$ZIP")
  if [ -n "$cached" ]; then touch "$cached.checked"; fi
fi
echo "[check-package] done in $(( $(date +%s) - started )) s"
