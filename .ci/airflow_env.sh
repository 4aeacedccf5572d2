#!/usr/bin/env bash
# Creates .venv-airflow, the environment for the Airflow DAG (dags/) and its tests, when it is
# missing or stale. Airflow cannot share .venv: its dependencies clash with the project's pins.
# Idempotent: a stamp keyed on this file makes a second run take milliseconds.
# Installed with uv (.ci/uv.sh), whose cache ($UV_CACHE_DIR, default ~/.cache/uv) is outside the
# repo. First run: 2 to 4 min on 2 cores (about 660 MB installed); a new clone: seconds.
#
# Versions: Airflow's published constraints file for a release is the reference for
# production installs; set AIRFLOW_CONSTRAINTS to it (a path or URL) to use it. Without it,
# the pins below (resolved and checked together on Python 3.11) are used.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=.venv-airflow
AIRFLOW_VERSION=3.3.2
SPARK_PROVIDER_VERSION=6.3.4
stamp=$VENV/.ready-$(sha1sum .ci/airflow_env.sh | cut -c1-12)

if [ -f "$stamp" ]; then exit 0; fi
echo "[airflow-env] creating $VENV (Airflow $AIRFLOW_VERSION; first run: 2 to 4 min, a new clone: seconds)"
source .ci/uv.sh
[ -x $VENV/bin/python ] || "$UV" venv -q --python "$PYTHON" $VENV
PY=$VENV/bin/python

constraints=${AIRFLOW_CONSTRAINTS:-}
if [ -z "$constraints" ]; then
  constraints=$VENV/constraints.txt
  cat > "$constraints" <<'EOF'
apache-airflow==3.3.2
apache-airflow-core==3.3.2
apache-airflow-task-sdk==1.3.2
apache-airflow-providers-apache-spark==6.3.4
apache-airflow-providers-standard==1.21.0
apache-airflow-providers-common-compat==1.23.0
apache-airflow-providers-common-io==1.11.0
apache-airflow-providers-common-sql==2.4.0
apache-airflow-providers-smtp==3.2.0
SQLAlchemy==2.1.9
alembic==1.20.1
pydantic==2.14.4
pydantic_core==2.50.5
fastapi==0.136.3
starlette==1.10.0
cadwyn==7.0.0
uvicorn==0.54.0
httpx==0.28.1
pendulum==3.3.0
croniter==7.0.0
Jinja2==3.1.6
structlog==26.1.0
msgspec==0.22.0
attrs==26.1.0
cryptography==50.0.2
EOF
fi
"$UV" pip install -q --python $PY --compile-bytecode -c "$constraints" \
  "apache-airflow==$AIRFLOW_VERSION" "apache-airflow-providers-apache-spark==$SPARK_PROVIDER_VERSION"
home=$(mktemp -d)  # importing airflow writes under AIRFLOW_HOME
AIRFLOW_HOME=$home $PY -c "import airflow, airflow.providers.apache.spark as s; print('[airflow-env] ok: airflow', airflow.__version__, 'spark provider', s.__version__)"
rm -rf "$home"
rm -f $VENV/.ready-*
touch "$stamp"
