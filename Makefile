# prodml: `make demo` and `make test` are all a fresh clone needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export PRODML_HOME := $(CURDIR)
export AIRFLOW_HOME := $(CURDIR)/airflow_home
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__PARALLELISM := 4
export AIRFLOW__API__HOST := 127.0.0.1
# The port comes from the environment or the command line (`make airflow AIRFLOW__API__PORT=8081`);
# task processes reach the execution API on the same port.
export AIRFLOW__API__PORT ?= 8080
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL ?= http://127.0.0.1:$(AIRFLOW__API__PORT)/execution/
export AIRFLOW_CONN_FS_DEFAULT := {"conn_type":"fs","extra":{"path":"/"}}
export GX_ANALYTICS_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONPATH := $(CURDIR):$(CURDIR)/plugins
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv demo test lint airflow shell serve ui-test up down compose-test bench lock clean mutate dist deploy

# The venv is stamped with the lock it was built from: editing constraints.txt rebuilds it.
# requirements.txt: runtime (what Composer installs); requirements-dev.txt: Airflow and the dev tools.
$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv==0.13.8
	$(VENV)/bin/uv pip install --python $(PY) --compile-bytecode -r requirements.txt -r requirements-dev.txt \
		-c constraints.txt
	$(VENV)/bin/uv pip install --python $(PY) --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# The GCS and BigQuery emulators for the gcp profile's tests (tests/gcp/emulators.py) get their own
# venv: bqemulator's fastapi pin conflicts with Airflow's.
EMU := .emulators
$(EMU)/.installed: requirements-emulators.txt $(VENV)/.installed
	test -x $(EMU)/bin/python || $(PYTHON) -m venv $(EMU)
	$(VENV)/bin/uv pip install --python $(EMU)/bin/python -r requirements-emulators.txt
	touch $@

demo: venv
	$(PY) scripts/demo.py

test: venv $(EMU)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .

# Airflow UI on http://127.0.0.1:$AIRFLOW__API__PORT (default 8080) with this project's dags/ and
# plugins/. Ctrl-C stops it: scripts/standalone.py signals standalone alone, not its components.
airflow: venv
	@mkdir -p $(AIRFLOW_HOME)
	@$(PY) scripts/standalone.py

# A shell with the environment every target here uses (AIRFLOW_HOME, dags, plugins, the venv on
# PATH): the README's `airflow ...` and `python -m ml...` commands work in it. `exit` leaves it.
# The venv goes first on PATH again after ~/.bashrc (pyenv or conda set-ups put their own python first).
shell: venv
	@mkdir -p $(AIRFLOW_HOME)
	@echo "prodml shell: AIRFLOW_HOME=$(AIRFLOW_HOME), the venv's airflow and python on PATH; exit to leave"
	@bash --rcfile <(echo '[ -f ~/.bashrc ] && . ~/.bashrc; PATH="$(CURDIR)/$(VENV)/bin:$$PATH"; PS1="(prodml) $$PS1"') -i

# The prediction service (ml.serving; README "Serving") on http://127.0.0.1:$PRODML_SERVE_PORT
# (default 8000). API keys from PRODML_API_KEYS, else a key generated once into .prodml/serving/api_key.
serve: venv
	@$(PY) -m ml.serving

# The browser test (tests/ui) against `make airflow` running in another terminal, after `make demo`
# (its forecasts cover 2026-11-02..2026-11-27). Screenshots: artifacts/ui/.
UI_TARGET_DATE ?= 2026-11-22
ui-test: venv
	PRODML_UI_URL=http://127.0.0.1:$(AIRFLOW__API__PORT) PRODML_UI_TARGET_DATE=$(UI_TARGET_DATE) \
	PRODML_UI_PASSWORD=$$($(PY) -c 'import json; print(json.load(open("$(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated"))["admin"])') \
		$(PY) -m pytest tests/ui -p no:cacheprovider

# The local stack (docker-compose.yaml, README "Local stack"): needs Docker with docker-compose
# (Compose v2 as a Docker plugin: `make up COMPOSE="docker compose"`).
# `make up` writes .env from .env.example with fresh secrets the first time.
COMPOSE ?= docker-compose
.env:
	scripts/compose_env.sh .env
	@echo "wrote .env (fresh secrets; admin's password is AIRFLOW_ADMIN_PASSWORD)"

up: .env
	$(COMPOSE) up -d --build
	@echo "Airflow UI: http://127.0.0.1:$$(sed -n 's/^AIRFLOW_PORT=//p' .env)  user: admin  password: AIRFLOW_ADMIN_PASSWORD in .env"

down:
	$(COMPOSE) down

# Builds and starts a stack of its own (free ports, project prodml-compose-test), runs the DAGs
# through the REST API, a backfill and the browser test, then removes it: scripts/compose_test.py.
# CI runs it as `scripts/ci_docker.sh make compose-test` (a Docker engine on a machine without one).
compose-test: venv
	COMPOSE="$(COMPOSE)" $(PY) scripts/compose_test.py

bench: venv
	$(PY) -m benchmarks.run

# Mutation testing (mutmut; config in pyproject.toml [tool.mutmut]) of the functions that matter in
# the critical modules, with the fast unit tier only; one mutmut run over the module groups
# (scripts/mutation_report.py GROUPS), then the score, cost and surviving mutants of each
# (README, "Mutation testing"; about 10 minutes on 2 cores). Not part of `make test`.
# Narrow it with mutant-name globs:
#   make mutate MUTANTS='ml.gate.* ml.registry.*'
MUTANTS ?=
mutate: venv
	rm -rf mutants && mkdir mutants
	$(PY) scripts/mutation_report.py --run --max-children $$(nproc) $(foreach m,$(MUTANTS),'$(m)')

# Re-resolve the full lock after editing requirements.txt or requirements-dev.txt.
lock: venv
	$(VENV)/bin/uv pip compile --python $(PY) requirements.txt requirements-dev.txt -o constraints.txt --no-header

# The ml wheel (dist/prodml-<version>-py3-none-any.whl; runtime dependencies declared in
# pyproject.toml) that Dataflow workers and the Vertex AI trainer image install.
dist: venv
	rm -rf dist build
	$(VENV)/bin/uv build --wheel --no-build-isolation -o dist

# Copy dags/, plugins/, include/ and ml/ to the Composer environment's bucket, and the wheel and the
# schema to the data bucket (README, "Run in Composer"):
#   make deploy COMPOSER_BUCKET=gs://<env-bucket> PRODML_BUCKET=<data-bucket> [DRY_RUN=1]
deploy: dist
	$(PY) scripts/deploy_composer.py --bucket $(COMPOSER_BUCKET) $(if $(DRY_RUN),--dry-run)

clean:
	rm -rf $(AIRFLOW_HOME) .prodml
