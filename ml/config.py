"""The one configuration loader: `include/config/<profile>.yaml`, profile from PRODML_PROFILE, or
any profile file named by PRODML_CONFIG (which may `extends:` another profile).

Only entry points (DAG files, operators, CLI `main`s) call `load`; everything else in `ml/`
receives the values it needs as arguments.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from ml.errors import PermanentError

PROJECT_ROOT = Path(os.environ.get("PRODML_HOME", Path(__file__).resolve().parents[1]))
DEFAULT_PROFILE = "local"
_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


class ConfigError(PermanentError, ValueError):
    pass


def _defaults(profile: str) -> dict[str, str]:
    """Each profile gets a data root of its own (`.prodml` for `local`, `.prodml/<profile>` for any
    other), so a second data set never mixes its registry, warehouse or artifacts with the first;
    $PRODML_DATA, or paths the profile spells out, say otherwise."""
    data = PROJECT_ROOT / ".prodml" if profile == DEFAULT_PROFILE else PROJECT_ROOT / ".prodml" / profile
    return {"PRODML_DATA": str(data), "PRODML_HOME": str(PROJECT_ROOT)}


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


def profile_path(profile: str | None = None) -> Path:
    """The profile file: $PRODML_CONFIG (a YAML file anywhere) when set and no profile is named,
    else include/config/<profile>.yaml (profile default: $PRODML_PROFILE or 'local')."""
    if profile is None and os.environ.get("PRODML_CONFIG"):
        path = Path(os.environ["PRODML_CONFIG"]).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"PRODML_CONFIG={os.environ['PRODML_CONFIG']}: no such profile file")
        return path
    profile = profile or profile_name()
    path = PROJECT_ROOT / "include" / "config" / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"unknown profile {profile!r}: no {path} (known: {', '.join(known)}; "
                          "or point PRODML_CONFIG at a profile file)")
    return path


class Replace(dict):
    """A mapping tagged `!replace` in a profile: it replaces the extended profile's mapping instead
    of being merged into it (e.g. `drift.features`, whose keys name the other data set's columns)."""


class _ProfileLoader(yaml.SafeLoader):
    pass


_ProfileLoader.add_constructor("!replace", lambda loader, node: Replace(loader.construct_mapping(node, deep=True)))


def merged(base: dict, override: dict) -> dict:
    """`base` with `override` laid over it, mapping by mapping; any other value (a list, a number,
    null, or a mapping tagged `!replace`) replaces the base's."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and not isinstance(value, Replace) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = dict(value) if isinstance(value, Replace) else value
    return out


def read_profile(path: Path, _seen: tuple = ()) -> dict:
    """The profile file's YAML; `extends: <profile name or file>` first reads that profile and lays
    this file over it (`merged`), so a new data set's profile says only what differs, e.g.
    `extends: local` with its own `schema:`, gate thresholds and `drift.features`."""
    if path in _seen:
        raise ConfigError(f"{path}: `extends` loops ({' -> '.join(map(str, (*_seen, path)))})")
    raw = yaml.load(path.read_text(), Loader=_ProfileLoader) or {}  # safe_load plus the `!replace` tag
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a profile is a YAML mapping")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    beside = path.parent / str(base)
    if beside.is_file():
        base_path = beside
    elif "/" in str(base) or str(base).endswith((".yaml", ".yml")):
        raise ConfigError(f"{path}: extends {base!r}: no such file beside this profile")
    else:
        base_path = profile_path(str(base))  # a profile of the project, e.g. `local`
    inherited = read_profile(base_path, (*_seen, path))
    inherited.pop("profile", None)  # the name (and so the data root) is this file's own
    return merged(inherited, raw)


def load(profile: str | None = None) -> dict:
    """Return the expanded configuration of `profile` (default: $PRODML_CONFIG's file, else
    $PRODML_PROFILE or 'local'). A relative `schema:` is looked up beside the profile file first,
    then in the project."""
    path = profile_path(profile)
    raw = read_profile(path)
    name = str(raw.get("profile") or path.stem)
    env = {**_defaults(name), **os.environ}
    config = _expand(raw, env, name)
    config["profile"] = name
    if "schema" not in config:
        raise ConfigError(f"{path}: no `schema:` (the feature contract of the data set)")
    beside = path.parent / config["schema"]
    config["schema_path"] = str(beside if beside.is_file() else PROJECT_ROOT / config["schema"])
    config["profile_path"] = str(path)
    return config
