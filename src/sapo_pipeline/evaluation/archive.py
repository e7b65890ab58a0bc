"""A run's results, kept: the few files of a run root that the study and the results page read.

A run root (``data/study/<data set>/seed<n>``) holds checkpoints, corpora and caches of several
hundred MB; the study reads a few hundred kB of it. ``python -m sapo_pipeline.evaluation.archive
ROOT --out studies/results/<data set>/seed<n>`` copies exactly those files, under the same
relative paths, so an archive is itself a run root for :mod:`~.study` and :mod:`~.results_page`:

* ``08_reporting/<report>_<split>.{json,md}``: the run's comparison reports (``evaluation``,
  and ``ablations`` where the ablations pipeline ran);
* ``08_reporting/evaluate/<model>/metrics_<split>.json``: each reported model's summary;
* ``07_model_output/evaluate/<model>/sample_metrics_<split>.parquet``: its per-row metrics, what
  the paired tests and the bootstrap over rows need;
* ``08_reporting/run_timings/*.json``: the ``kedro run`` calls that built the root (wall time per
  stage, the exact command).

``MANIFEST.json`` lists every file with its size and sha256, the source root and the commit the
archive was made at (the commit of the code that ran each ``kedro run`` is in its timing record). The archive is written to a
temporary folder and renamed into place, so an interrupted archive never leaves a half copy.
Committed under ``studies/results/``, the study's seeds accumulate across machines: a seed run
on one machine and a seed run on another are reported together.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sapo_pipeline.io_utils import sha256_file, write_directory_atomically
from sapo_pipeline.provenance import code_version, environment

log = logging.getLogger(__name__)

REPORTS = ("evaluation", "ablations")
MANIFEST = "MANIFEST.json"


def run_files(root: str | Path, splits: Sequence[str] = ("test", "valid")) -> list[Path]:
    """The files of ``root`` the study and the results page read, relative to ``root``.

    Every model named in a report must have its summary and per-row metrics (a report without
    them is an error naming the missing file); a split or report the run did not write is
    skipped. At least one report must exist."""
    root = Path(root)
    found: list[Path] = []
    for split in splits:
        for name in REPORTS:
            report = Path("08_reporting") / f"{name}_{split}.json"
            if not (root / report).is_file():
                continue
            found.append(report)
            if (root / report.with_suffix(".md")).is_file():
                found.append(report.with_suffix(".md"))
            content = json.loads((root / report).read_text(encoding="utf-8"))
            for row in content["methods"]:
                for model in row["runs"]:
                    for rel in (Path("08_reporting/evaluate") / model / f"metrics_{split}.json",
                                Path("07_model_output/evaluate") / model
                                / f"sample_metrics_{split}.parquet"):
                        if not (root / rel).is_file():
                            raise FileNotFoundError(f"{root}: {model} is in {report} but {rel} "
                                                    "is missing")
                        found.append(rel)
    if not found:
        raise FileNotFoundError(f"{root}: no 08_reporting/<evaluation|ablations>_<split>.json "
                                "(has the evaluate pipeline run into this run root?)")
    found += sorted(p.relative_to(root) for p in (root / "08_reporting" / "run_timings").glob("*.json"))
    return list(dict.fromkeys(found))


def archive_run(root: str | Path, out: str | Path,
                splits: Sequence[str] = ("test", "valid")) -> dict[str, Any]:
    """Copy :func:`run_files` of ``root`` to ``out`` (replacing it atomically) with a
    ``MANIFEST.json``; returns the manifest."""
    root, out = Path(root), Path(out)
    files = run_files(root, splits)
    code = code_version() or {}
    manifest = {"source_root": str(root), "archived_at_commit": code.get("commit"),
                "archived_code_dirty": code.get("dirty"), "archived_environment": environment(),
                "files": {str(rel): {"bytes": (root / rel).stat().st_size,
                                     "sha256": sha256_file(root / rel)} for rel in files}}

    def write(tmp: Path) -> None:
        for rel in files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, tmp / rel)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    write_directory_atomically(out, write)
    return manifest


def verify_archive(path: str | Path) -> list[str]:
    """What differs between an archive and its manifest (empty: intact)."""
    path = Path(path)
    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    problems = []
    for rel, meta in manifest["files"].items():
        f = path / rel
        if not f.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(f) != meta["sha256"]:
            problems.append(f"{rel}: sha256 differs from {MANIFEST}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sapo_pipeline.evaluation.archive ROOT --out DIR`` (or ``--verify DIR``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sapo_pipeline.evaluation.archive",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", help="the run root to archive")
    parser.add_argument("--out", help="the archive folder (replaced if it exists)")
    parser.add_argument("--verify", metavar="DIR", help="check an archive against its manifest")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.verify:
        problems = verify_archive(args.verify)
        for p in problems:
            log.error("%s: %s", args.verify, p)
        return 1 if problems else 0
    if not (args.root and args.out):
        parser.error("ROOT and --out are required (or --verify DIR)")
    manifest = archive_run(args.root, args.out)
    size = sum(m["bytes"] for m in manifest["files"].values())
    log.info("archived %d files (%.0f kB) of %s into %s", len(manifest["files"]), size / 1e3,
             args.root, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
