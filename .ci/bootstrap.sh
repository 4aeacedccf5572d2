#!/usr/bin/env bash
# Creates the project's virtual environment (.venv) when it is missing or stale, with uv
# (.ci/uv.sh). Heavy artifacts live outside the repo so a second run takes seconds:
#   downloads, unpacked      -> $UV_CACHE_DIR         (default ~/.cache/uv)
#   Horovod, pyspark wheels  -> $MTRANK_CACHE/wheels  (default ~/.cache/mtrank), built once
#   Spark's jar cache        -> $MTRANK_CACHE/ivy     (set by pipeline/spark.py)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
CACHE=${MTRANK_CACHE:-$HOME/.cache/mtrank}
VENV=.venv
HOROVOD_VERSION=0.28.1
TORCH_VERSION=2.13.0
stamp_key=$(cat pyproject.toml .ci/bootstrap.sh | sha1sum | cut -c1-12)
stamp=$VENV/.ready-$stamp_key

if [ -f "$stamp" ]; then exit 0; fi
echo "[setup] creating $VENV (first run: about 8 min for downloads and the Horovod build; a new clone: seconds)"
mkdir -p "$CACHE/wheels"
source .ci/uv.sh
[ -x $VENV/bin/python ] || "$UV" venv -q --seed --python "$PYTHON" $VENV
PY=$VENV/bin/python
# Bytecode compiled at install, as pip does (uv does not by default): a process that may not write
# it (PYTHONDONTWRITEBYTECODE) would otherwise compile torch again at every import.
install() { "$UV" pip install -q --python $PY --compile-bytecode --find-links "$CACHE/wheels" "$@"; }
install --upgrade pip wheel "setuptools>=77"
# torch first: Horovod compiles against it.
install "torch==$TORCH_VERSION" "numpy<2" cloudpickle psutil pyyaml packaging

wheel=$(ls "$CACHE"/wheels/horovod-$HOROVOD_VERSION-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
  echo "[setup] building Horovod $HOROVOD_VERSION (CPU, gloo, C++17 patch) once into $CACHE/wheels"
  src=$(mktemp -d)
  $PY -m pip download -q --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$src"
  tar -xzf "$src"/horovod-$HOROVOD_VERSION.tar.gz -C "$src"
  # horovod 0.28.1 hard-codes C++14; torch >= 2.1 headers need C++17.
  sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' \
    "$src"/horovod-$HOROVOD_VERSION/CMakeLists.txt "$src"/horovod-$HOROVOD_VERSION/horovod/torch/CMakeLists.txt
  grep -q 'CMAKE_CXX_STANDARD 17' "$src"/horovod-$HOROVOD_VERSION/horovod/torch/CMakeLists.txt
  env -u CUDA_HOME PATH="$(dirname "$(readlink -f $PY)"):$PATH" \
    HOROVOD_WITH_PYTORCH=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 \
    HOROVOD_WITHOUT_MPI=1 HOROVOD_WITH_GLOO=1 HOROVOD_CPU_OPERATIONS=GLOO \
    MAKEFLAGS=-j"$(nproc)" \
    $PY -m pip wheel -q --no-build-isolation --no-deps -w "$CACHE/wheels" "$src"/horovod-$HOROVOD_VERSION
  rm -rf "$src"
  wheel=$(ls "$CACHE"/wheels/horovod-$HOROVOD_VERSION-*.whl | head -1)
fi
# pyspark is published as a source archive only, which uv would build again for every new .venv
# (about 20 s): its wheel is built once into $CACHE/wheels, where install() finds it.
pyspark_version=$(sed -n 's/^ *"pyspark==\([^"]*\)",$/\1/p' pyproject.toml)
[ -n "$pyspark_version" ] || { echo "[setup] no \"pyspark==<version>\", line in pyproject.toml's dependencies" >&2; exit 1; }
if ! ls "$CACHE"/wheels/pyspark-"$pyspark_version"-*.whl >/dev/null 2>&1; then
  $PY -m pip wheel -q --no-deps "pyspark==$pyspark_version" -w "$CACHE/wheels"
fi
install --no-deps "$wheel"
install -e ".[dev]"
$PY -c "import horovod.torch, pyspark, delta, petastorm, torch; print('[setup] ok: torch', torch.__version__, 'pyspark', pyspark.__version__, 'horovod', horovod.__version__)"
rm -f $VENV/.ready-*
touch "$stamp"
