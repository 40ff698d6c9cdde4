"""Deploy prodml to a Cloud Composer environment: copy the code to the environment's bucket, and
the wheel and the schema to the data bucket ($PRODML_BUCKET) that Dataflow and Vertex AI read.

    python scripts/deploy_composer.py --bucket gs://<composer-bucket> [--data-bucket gs://<bucket>] [--dry-run]
    make deploy COMPOSER_BUCKET=gs://<composer-bucket> PRODML_BUCKET=<bucket> [DRY_RUN=1]

Composer bucket (Composer syncs dags/ and plugins/ to every Airflow component; dags/ is on sys.path):
  dags/*.py              → dags/             the DAG files
  ml/**.py               → dags/ml/          the ml package, imported as `ml` (a local library)
  include/**             → dags/include/     profiles, schemas, SQL (set PRODML_HOME=/home/airflow/gcs/dags)
  (generated)            → dags/.airflowignore   ml/ and include/ are not DAG folders
  plugins/**             → plugins/          prodml_airflow (and its .airflowignore)
Data bucket (named by the gcp profile, read by the Dataflow workers and the Vertex AI job):
  dist/prodml-<version>-py3-none-any.whl → dist/   (`--extra_package`; build it with `make dist`)
  include/schemas/*                      → include/schemas/

`--dry-run` prints every copy and writes nothing. Objects are overwritten in place; nothing is
deleted (remove a DAG from the bucket by hand). The runtime requirements are installed with
`gcloud composer environments update --update-pypi-packages-from-file requirements.txt`.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from prodml_airflow.targets import package_uri, wheel_name  # noqa: E402

import ml  # noqa: E402

DAGS_IGNORE = "# Not DAG folders: the ml package and the project's include/ files (deploy_composer.py)\nml/\ninclude/\n"
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}


@dataclass(frozen=True)
class Copy:
    source: Path | None  # None: `content` is written
    target: str
    content: str | None = None


def _files(folder: Path, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not SKIP_DIRS & set(p.relative_to(folder).parts)
                  and p.suffix != ".pyc" and (suffixes is None or p.suffix in suffixes))


def plan(bucket: str, data_bucket: str, wheel: Path, root: Path = ROOT) -> list[Copy]:
    """Every copy of a deployment, in order: code to the Composer bucket, artefacts to the data bucket."""
    bucket, data_bucket = bucket.rstrip("/"), data_bucket.rstrip("/")
    copies = [Copy(p, f"{bucket}/dags/{p.name}") for p in sorted((root / "dags").glob("*.py"))]
    copies.append(Copy(None, f"{bucket}/dags/.airflowignore", DAGS_IGNORE))
    copies += [Copy(p, f"{bucket}/dags/{p.relative_to(root).as_posix()}") for p in _files(root / "ml", (".py",))]
    copies += [Copy(p, f"{bucket}/dags/{p.relative_to(root).as_posix()}") for p in _files(root / "include")]
    copies += [Copy(p, f"{bucket}/{p.relative_to(root).as_posix()}") for p in _files(root / "plugins")]
    copies.append(Copy(wheel, package_uri(data_bucket)))
    copies += [Copy(p, f"{data_bucket}/{p.relative_to(root).as_posix()}") for p in _files(root / "include" / "schemas")]
    return copies


def deploy(copies: list[Copy], dry_run: bool = False, out=sys.stdout) -> int:
    from ml import storage

    for copy in copies:
        source = "(generated)" if copy.source is None else copy.source.relative_to(ROOT).as_posix() \
            if copy.source.is_relative_to(ROOT) else str(copy.source)
        print(f"{'would copy' if dry_run else 'copy'} {source} -> {copy.target}", file=out)
        if dry_run:
            continue
        if copy.source is None:
            storage.write_text(copy.target, copy.content)
        else:
            storage.put_file(copy.source, copy.target)
    print(f"{len(copies)} objects {'to copy (dry run: nothing written)' if dry_run else 'copied'}", file=out)
    return len(copies)


def _gs(value: str) -> str:
    if not value.startswith("gs://") or value.rstrip("/") == "gs:":
        raise argparse.ArgumentTypeError(f"{value!r} is not a gs:// bucket URI")
    return value.rstrip("/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True, type=_gs,
                        help="the Composer environment's bucket, gs://<name> (gcloud composer environments "
                             "describe ENV --location R --format='value(config.dagGcsPrefix)', without /dags)")
    data_default = f"gs://{os.environ['PRODML_BUCKET']}" if os.environ.get("PRODML_BUCKET") else None
    parser.add_argument("--data-bucket", type=_gs, default=data_default,
                        help="the profile's bucket, gs://$PRODML_BUCKET (default: from PRODML_BUCKET)")
    parser.add_argument("--wheel", type=Path, default=ROOT / "dist" / wheel_name(),
                        help="the ml wheel (default: dist/%(default)s, built by `make dist`)")
    parser.add_argument("--dry-run", action="store_true", help="print the copies, write nothing")
    args = parser.parse_args(argv)
    if args.data_bucket is None:
        parser.error("--data-bucket is required (or set PRODML_BUCKET)")
    if args.wheel.name != wheel_name(ml.__version__):
        parser.error(f"{args.wheel.name} is not the wheel of this version ({wheel_name()}): run `make dist`")
    if not args.wheel.is_file():
        parser.error(f"{args.wheel} does not exist: run `make dist` first")
    deploy(plan(args.bucket, args.data_bucket, args.wheel), dry_run=args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
