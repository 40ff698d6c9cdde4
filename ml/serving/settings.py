"""The service's settings: the profile's `serving:` section, with defaults, as plain values.

Read once by the entry points (`python -m ml.serving`, the kill-switch and fallback CLIs); the
service itself receives a `Settings` and the sections it needs, never the profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ml import storage


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    access_log: bool = False          # uvicorn's per-request lines (the prediction log is the record)
    api_keys: dict = field(default_factory=lambda: {"source": "env", "env": "PRODML_API_KEYS"})
    admin_keys: dict = field(default_factory=lambda: {"source": "env", "env": "PRODML_ADMIN_KEYS"})
    max_instances: int = 256          # instances in one request (413 above)
    max_body_bytes: int = 1_048_576   # request body (413 above)
    max_batch: int = 64               # rows of one micro-batched model call
    max_wait_ms: float = 2.0          # how long a batch stays open for more rows
    head_days: int = 2                # newest champion partitions of `predictions` held in memory
    poll_s: float = 10.0              # registry champion + head partitions
    kill_switch_poll_s: float = 2.0   # the flag in the bucket (other replicas' toggles)
    kill_switch_uri: str = ""         # <bucket>/serving/kill_switch.json
    fallback_uri: str = ""            # <bucket>/serving/fallback_rates.json
    fallback_window_days: int = 28
    log_flush_rows: int = 2000        # prediction log: flush at this many queued rows ...
    log_flush_s: float = 5.0          # ... or this often
    log_max_queue: int = 200_000      # rows held while the warehouse is unreachable (oldest dropped)
    challengers: tuple[str, ...] = ()  # registry versions served next to the champion (bandit)
    bandit: dict = field(default_factory=dict)  # options of ml.serving.bandit.ThompsonBandit

    @classmethod
    def from_config(cls, config: dict, **overrides) -> Settings:
        section = dict(config.get("serving") or {})
        bucket = config["storage"]["bucket"]
        section.setdefault("kill_switch_uri", storage.join(bucket, "serving", "kill_switch.json"))
        section.setdefault("fallback_uri", storage.join(bucket, "serving", "fallback_rates.json"))
        section.update(overrides)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise ValueError(f"serving: unknown settings {unknown} (known: {sorted(known)})")
        values = {}
        for name, value in section.items():
            default = known[name].default
            if value is None:
                values[name] = value
            elif isinstance(default, bool):
                values[name] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
            elif isinstance(default, (int, float)) and not isinstance(default, bool):
                values[name] = type(default)(value)
            elif name == "challengers":
                values[name] = tuple(v.strip() for v in (value.split(",") if isinstance(value, str) else value)
                                     if str(v).strip())
            else:
                values[name] = value
        return cls(**values)
