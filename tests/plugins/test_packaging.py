"""The runtime/development split of the requirements and the wheel's declared dependencies agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins(path: Path) -> dict[str, str]:
    """name → exact version of every `name[extras]==version` line."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            [spec] = req.specifier
            assert spec.operator == "==", f"{path.name}: {line} is not an exact pin"
            found[canonicalize_name(req.name)] = spec.version
    return found


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return [Requirement(r) for r in [*project["dependencies"], *extras]]


def test_runtime_requirements_have_no_airflow_and_dev_has_it():
    runtime, dev = pins(ROOT / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    assert not [name for name in runtime if name.startswith("apache-airflow")]  # Composer brings Airflow
    assert "apache-airflow" in dev and {"pytest", "ruff", "mutmut"} <= set(dev)
    assert not set(runtime) & set(dev)


def test_every_declared_dependency_is_pinned_in_runtime_within_its_range():
    runtime = pins(ROOT / "requirements.txt")
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in runtime, f"{req} (pyproject.toml) is not pinned in requirements.txt"
        assert req.specifier.contains(runtime[name]), f"requirements.txt pins {name}=={runtime[name]}, outside {req}"
    assert set(runtime) == {canonicalize_name(r.name) for r in declared()}


def test_the_lock_holds_the_pins_of_both_files():
    lock = {canonicalize_name(n): v for n, v in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", (ROOT / "constraints.txt")
                                                           .read_text(), re.M)}
    for name, version in {**pins(ROOT / "requirements.txt"), **pins(ROOT / "requirements-dev.txt")}.items():
        assert lock.get(name) == version, f"constraints.txt has {name}=={lock.get(name)}, requirements {version}"


def test_the_wheel_version_is_the_package_version():
    import ml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ml.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", ml.__version__)
