"""The one configuration loader: `include/config/<profile>.yaml`, profile from PRODML_PROFILE.

Only entry points (DAG files, operators, CLI `main`s) call `load`; everything else in `ml/`
receives the values it needs as arguments.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

PROJECT_ROOT = Path(os.environ.get("PRODML_HOME", Path(__file__).resolve().parents[1]))
DEFAULT_PROFILE = "local"
_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    pass


def _defaults() -> dict[str, str]:
    return {"PRODML_DATA": str(PROJECT_ROOT / ".prodml"), "PRODML_HOME": str(PROJECT_ROOT)}


def _expand(value, env: dict[str, str], where: str):
    if isinstance(value, dict):
        return {k: _expand(v, env, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable ${{{name}}} is not set and has no default")

    return _VAR.sub(sub, value)


def profile_name() -> str:
    return os.environ.get("PRODML_PROFILE", DEFAULT_PROFILE)


def load(profile: str | None = None) -> dict:
    """Return the expanded configuration of `profile` (default: $PRODML_PROFILE or 'local')."""
    profile = profile or profile_name()
    path = PROJECT_ROOT / "include" / "config" / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"unknown profile {profile!r}: no {path} (known: {', '.join(known)})")
    raw = yaml.safe_load(path.read_text())
    env = {**_defaults(), **os.environ}
    config = _expand(raw, env, profile)
    config["schema_path"] = str(PROJECT_ROOT / config["schema"])
    return config
