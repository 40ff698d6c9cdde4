# The Airflow image of the local stack (docker-compose.yaml): one image for every component
# (init, api-server, scheduler, dag-processor, triggerer), Airflow plus this project, as Composer
# runs it: Composer's image brings Airflow and its providers, and installs requirements.txt.
#
# Base: a plain Python 3.11 image (Debian bookworm), not the official apache/airflow image. The
# whole environment then comes from this repository's pins (requirements*.txt + constraints.txt,
# the lock the venv and CI use), so the stack runs exactly the versions the tests ran; the official
# image would bring its own Python packages and constraints to reconcile with ours. BASE_IMAGE
# may name any Debian/Ubuntu image with python3 (>= 3.11) and its venv module: CI builds one from
# Debian packages (scripts/ci_docker.sh) because no public registry is reachable there.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# The official Airflow image's user: uid 50000, group 0 (root group, for OpenShift-style uids).
ARG AIRFLOW_UID=50000
RUN echo "airflow:x:${AIRFLOW_UID}:0:airflow:/opt/airflow:/bin/bash" >> /etc/passwd \
 && mkdir -p /opt/airflow/logs /opt/airflow/auth /opt/prodml /data \
 && chown -R "${AIRFLOW_UID}:0" /opt/airflow /opt/prodml /data

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -q uv==0.13.8

WORKDIR /opt/prodml

# Layer 1 (large, rarely changes): the dependencies, from the pins alone. Airflow and its providers
# are pinned in requirements-dev.txt (the venv; Composer brings its own), with the dev tools that
# the image does not need: only the apache-airflow* lines (and graphviz, Airflow's extra) are taken.
# RESOLVE_FOR_PYTHON: resolve as if for this Python version. Only CI's base image sets it (3.11.3):
# Debian bookworm's python3 is 3.11.2, and two of the Google provider's async clients (gcloud-aio-auth,
# gcloud-aio-bigquery: deferrable GCS/BigQuery triggers, gcp profile only) declare >=3.11.3 without
# any code that needs it. Python images (3.11.x latest) leave it empty.
ARG RESOLVE_FOR_PYTHON=""
COPY requirements.txt requirements-dev.txt constraints.txt ./
RUN grep -E '^(apache-airflow|graphviz)' requirements-dev.txt > requirements-airflow.txt \
 && uv pip install ${RESOLVE_FOR_PYTHON:+--python-version "$RESOLVE_FOR_PYTHON"} \
        -r requirements.txt -r requirements-airflow.txt -c constraints.txt \
 && python -c "import airflow, tensorflow, apache_beam, duckdb, psycopg2, asyncpg"

# Layer 2 (small, changes often): the ml package, installed editable from /opt/prodml/ml. The
# compose file mounts the working tree's ml/ (and dags/, plugins/, include/) at the same paths,
# so an edit on the host reaches the next task without a rebuild; without the mounts the image
# runs the copy baked in here. ml.config finds include/ next to ml/ (PRODML_HOME).
COPY pyproject.toml setup.py ./
COPY ml/ ml/
RUN uv pip install --no-deps -e .
COPY include/ include/
COPY plugins/ plugins/
COPY dags/ dags/

ENV AIRFLOW_HOME=/opt/airflow \
    PRODML_HOME=/opt/prodml \
    PRODML_DATA=/data \
    PYTHONPATH=/opt/prodml:/opt/prodml/plugins \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/prodml/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/prodml/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    GX_ANALYTICS_ENABLED=false \
    TF_CPP_MIN_LOG_LEVEL=2

USER ${AIRFLOW_UID}:0
WORKDIR /opt/airflow
CMD ["airflow", "version"]
