"""The local stack's files, checked without starting anything: docker-compose.yaml stays within what
docker-compose 1.29 accepts (`docker-compose config -q` where it is installed, CI's compose-test
included), every value it takes from the environment is in .env.example, every container is on the
host network with its port from .env, and the image installs the project's pins."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer"}


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_accepts_the_file(tmp_path):
    env = tmp_path / "env"
    env.write_text("".join(f"{k}={'x' if v == 'change-me' else v}\n" for k, v in _env_example().items()))
    result = subprocess.run(["docker-compose", "--env-file", str(env), "-f", str(COMPOSE_FILE), "config", "-q"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_accepts_the_file_without_an_env_file(tmp_path):
    """`docker-compose config` in a fresh clone (no .env yet): laptop defaults, as Airflow's own file."""
    (tmp_path / "docker-compose.yaml").write_text(COMPOSE_FILE.read_text())
    env = {k: v for k, v in os.environ.items() if k not in _env_example()}
    result = subprocess.run(["docker-compose", "config", "-q"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 0, result.stderr


def test_only_fields_that_docker_compose_1_29_knows():
    compose = _compose()
    assert "name" not in compose and "version" not in compose
    for name, service in compose["services"].items():
        assert "start_interval" not in service.get("healthcheck", {}), name
        for dependency in (service.get("depends_on") or {}).values():
            assert set(dependency) <= {"condition"}, name


def test_the_stack_of_the_issue_with_local_executor_and_health():
    services = _compose()["services"]
    assert set(services) == AIRFLOW_SERVICES | {"postgres", "prodml-serving"}
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        if name != "airflow-init":
            assert service["healthcheck"]["test"], name
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["PRODML_PROFILE"] == "local"
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "build" in services["airflow-init"]  # one build; the other services use its image
    serving = services["prodml-serving"]  # the prediction service, from the same image
    assert serving["image"] == services["airflow-scheduler"]["image"] and "build" not in serving
    assert serving["command"] == ["python", "-m", "ml.serving"]
    assert serving["environment"]["PRODML_SERVE_PORT"] == "${SERVING_PORT:-8000}"
    assert serving["environment"]["PRODML_PROFILE"] == "local" and "prodml-data:/data" in serving["volumes"]


def test_every_variable_comes_from_env_example_and_secrets_are_placeholders():
    text = COMPOSE_FILE.read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = _env_example()
    assert used - {"PRODML_RESOLVE_FOR_PYTHON"} <= set(example), used - set(example)
    for key in ("AIRFLOW_ADMIN_PASSWORD", "POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_SECRET_KEY",
                "AIRFLOW_JWT_SECRET", "PRODML_API_KEYS", "PRODML_ADMIN_KEYS"):
        assert example[key] == "change-me", key  # compose_env.sh puts fresh secrets there
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_env_file_gets_fresh_secrets_and_overrides(tmp_path):
    out = tmp_path / "env"
    subprocess.run([str(ROOT / "scripts" / "compose_env.sh"), str(out), "AIRFLOW_PORT=18080"], check=True)
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if line and not line.startswith("#"))
    assert env["AIRFLOW_PORT"] == "18080" and out.read_text().count("AIRFLOW_PORT=") == 1
    assert "change-me" not in env.values()
    import base64

    assert len(base64.urlsafe_b64decode(env["AIRFLOW_FERNET_KEY"])) == 32
    assert out.stat().st_mode & 0o077 == 0  # secrets: readable by the owner only


def test_image_installs_the_pins_and_the_ml_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-c constraints.txt" in dockerfile and "-r requirements.txt" in dockerfile
    assert "uv pip install --no-deps -e ." in dockerfile
    assert re.search(r"^USER \$\{AIRFLOW_UID\}", dockerfile, re.M)  # not root
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".venv", ".git", ".env"} <= set(ignored)
