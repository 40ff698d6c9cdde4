"""`python -m ml.serving` (`make serve`): the prediction service on the profile's settings.

Listens on 127.0.0.1:$PRODML_SERVE_PORT (default 8000; `serving.host`/`serving.port` in the
profile). API keys come from `serving.api_keys` (PRODML_API_KEYS locally); when that variable is
empty, a key is generated once into `$PRODML_DATA/serving/api_key` (mode 600) and used from there,
so `make serve` works from a fresh clone without printing a key.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path


def _local_key(variable: str, data_dir: str) -> str:
    """The key file's path, after putting its key in `variable` (created on first use)."""
    path = Path(data_dir) / "serving" / "api_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    os.environ[variable] = path.read_text().strip()
    return str(path)


def build(config: dict, **overrides):
    """The FastAPI app and its settings for `config` (a loaded profile)."""
    from ml.serving.app import create_app
    from ml.serving.auth import key_source
    from ml.serving.service import Service
    from ml.serving.settings import Settings

    settings = Settings.from_config(config, **overrides)
    service = Service(schema_path=config["schema_path"], registry_section=config["registry"],
                      warehouse_section=config["warehouse"], validated_uri=config["storage"]["validated"],
                      settings=settings, api_keys=key_source(settings.api_keys),
                      admin_keys=key_source(settings.admin_keys))
    return create_app(service), settings


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from ml import config as C

    parser = argparse.ArgumentParser(prog="python -m ml.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = C.load(args.profile)
    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    app, settings = build(config, **overrides)
    keys = settings.api_keys
    key_note = f"API keys: {keys.get('source')} {keys.get('env') or keys.get('secret')}"
    if keys.get("source", "env") == "env" and not os.environ.get(keys["env"], "").strip():
        # beside the profile's other local data (.prodml, or .prodml/<profile>; $PRODML_DATA wins)
        path = _local_key(keys["env"], os.environ.get("PRODML_DATA") or C._defaults(config["profile"])["PRODML_DATA"])
        key_note = f"{keys['env']} is not set: using the key in {path}"
    url = f"http://{settings.host}:{settings.port}"
    print(f"prodml serving on {url}  (POST {url}/predict, GET {url}/healthz, GET {url}/metrics)\n"
          f"  profile {config['profile']}; {key_note}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=settings.access_log,
                timeout_graceful_shutdown=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
