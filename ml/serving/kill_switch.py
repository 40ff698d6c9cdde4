"""The kill switch: "stop predictions" as a flag in the bucket, with who, why and when.

    python -m ml.serving.kill_switch on --who alice --why "bad scores after the 14:00 promotion"
    python -m ml.serving.kill_switch off --who alice --why "v0007 rolled back"
    python -m ml.serving.kill_switch status

The flag is one small JSON object at `<bucket>/serving/kill_switch.json` (`on`, `who`, `why`,
`at`), written through the storage backend (an atomic put, on a folder or on Cloud Storage). Every
replica of the service polls it; the admin endpoint `POST /admin/kill-switch` and a DAG task
(`set_state` with a param) write the same object. While it is on, every answer comes from the
safe fallback (`ml.serving.fallback`), says `"path": "fallback"`, and the response carries the
flag. Every toggle is an alert row (`ml.alerts.raise_alert`) with who and why: critical when
switched on, info when switched off.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import asdict, dataclass

from ml import alerts, storage

SOURCE = "serving.kill_switch"


@dataclass(frozen=True)
class State:
    on: bool = False
    who: str | None = None
    why: str | None = None
    at: str | None = None

    def public(self) -> dict:
        return asdict(self)


OFF = State()


def read_state(uri: str) -> State:
    """The stored flag; off when nothing was ever stored."""
    if not storage.exists(uri):
        return OFF
    raw = json.loads(storage.read_text(uri))
    return State(on=bool(raw.get("on")), who=raw.get("who"), why=raw.get("why"), at=raw.get("at"))


def set_state(uri: str, on: bool, *, who: str, why: str, warehouse=None) -> State:
    """Store the flag and record the toggle as an alert (in `warehouse`'s alerts table when given)."""
    who, why = (who or "").strip(), (why or "").strip()
    if not who or not why:
        raise ValueError("the kill switch needs who and why")
    state = State(on=bool(on), who=who, why=why, at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    storage.write_text(uri, json.dumps(state.public(), sort_keys=True))
    word = "ON: every answer comes from the fallback" if on else "OFF: models answer again"
    alerts.raise_alert(warehouse, "critical" if on else "info", SOURCE,
                       f"kill switch {word} (by {who}: {why})", {"on": bool(on), "who": who, "why": why,
                                                                   "uri": uri})
    return state


def main(argv: list[str] | None = None) -> int:
    from ml import config as C
    from ml import warehouse as W
    from ml.serving.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m ml.serving.kill_switch", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("on", "off", "status"))
    parser.add_argument("--who", help="who flips it (required for on/off)")
    parser.add_argument("--why", help="why (required for on/off)")
    parser.add_argument("--profile", default=None)
    args = parser.parse_args(argv)
    config = C.load(args.profile)
    uri = Settings.from_config(config).kill_switch_uri
    if args.action == "status":
        print(json.dumps(read_state(uri).public()))
        return 0
    if not args.who or not args.why:
        parser.error("on/off need --who and --why")
    with W.connect(config["warehouse"]) as wh:
        wh.ensure_tables()
        state = set_state(uri, args.action == "on", who=args.who, why=args.why, warehouse=wh)
    print(json.dumps(state.public()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
