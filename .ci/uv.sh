# Sourced by .ci/bootstrap.sh and .ci/airflow_env.sh: sets UV to the path of uv, the installer they
# use, after installing it once into $MTRANK_CACHE/tools/uv-<version> (outside the repo).
#
# Why uv: it keeps every wheel unpacked in its cache ($UV_CACHE_DIR, default ~/.cache/uv) and
# links the files into a new environment instead of unpacking them again, so a fresh clone's
# .venv (torch with its CUDA libraries, pyspark: about 5 GB) takes seconds once the cache is warm,
# where pip took about 2 minutes. uv reads UV_* settings, not pip's: an index or a certificate
# file set for pip (PIP_INDEX_URL, PIP_CERT) is handed on where no uv setting says otherwise.
UV_VERSION=0.13.9
uv_tool=${MTRANK_CACHE:-$HOME/.cache/mtrank}/tools/uv-$UV_VERSION
if [ ! -x "$uv_tool/bin/uv" ]; then
  rm -rf "$uv_tool" "$uv_tool.partial"
  "${PYTHON:-python3.11}" -m pip install -q --root-user-action=ignore --target "$uv_tool.partial" "uv==$UV_VERSION"
  mv "$uv_tool.partial" "$uv_tool"  # complete, or not there
fi
UV=$uv_tool/bin/uv
if [ -n "${PIP_INDEX_URL:-}" ] && [ -z "${UV_DEFAULT_INDEX:-}" ]; then export UV_DEFAULT_INDEX=$PIP_INDEX_URL; fi
if [ -n "${PIP_CERT:-}" ] && [ -z "${SSL_CERT_FILE:-}" ]; then export SSL_CERT_FILE=$PIP_CERT; fi
