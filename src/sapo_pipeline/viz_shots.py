"""Screenshots of the kedro-viz lineage, readable: ``python -m sapo_pipeline.viz_shots BUILD --out
docs/viz`` (``make viz-shots``), BUILD being a ``kedro viz build --include-hooks`` folder.

Headless Chromium opens the static site with the onboarding tour dismissed and the light theme
(kedro-viz's ``KedroViz`` local-storage settings, set by a small page served beside the site
before it redirects to the view), at a window size where the graph fits at a zoom that shows the
node names. :data:`SHOTS`: the whole ``sapo_full`` flow (task nodes and the namespaced stages,
datasets hidden -- with its ~110 datasets the flow only fits at ~20%), and the ``rl`` pipeline
with every RL namespace expanded (nodes and datasets).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import logging
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
LOADER = "sapo-shot.html"


@dataclass(frozen=True)
class Shot:
    """One view of the site."""

    name: str  # the PNG's stem
    pipeline: str  # kedro-viz ``pid``
    query: str = ""  # further URL parameters (types, expandAllPipelines, ...)
    expand: bool = False  # expand every modular pipeline (namespace)


SHOTS = (
    Shot("sapo_full", "sapo_full", "&types=nodes"),
    Shot("rl_namespaces", "rl", "&expandAllPipelines=true", expand=True),
)


def chromium() -> str | None:
    """A headless-capable Chromium on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def _loader(shot: Shot) -> str:
    settings = {"showFeatureHints": False, "theme": "light", "textLabels": True,
                "isPrettyName": False, "expandAllPipelines": shot.expand,
                "pipeline": {"active": shot.pipeline}}
    target = f"./?pid={shot.pipeline}{shot.query}"
    return ("<!doctype html><script>"
            f"localStorage.setItem('KedroViz', {json.dumps(json.dumps(settings))});"
            f"location.replace({json.dumps(target)});</script>\n")


def take(build: str | Path, out_dir: str | Path, shots: Sequence[Shot] = SHOTS,
         size: tuple[int, int] = (2400, 1500), browser: str | None = None,
         budget_ms: int = 20000) -> list[Path]:
    """One PNG per shot of the site in ``build`` into ``out_dir``; returns their paths."""
    build, out_dir = Path(build), Path(out_dir)
    if not (build / "index.html").is_file():
        raise FileNotFoundError(f"{build}: no index.html (run `kedro viz build --include-hooks`)")
    browser = browser or chromium()
    if browser is None:
        raise RuntimeError("no Chromium on PATH (Debian package 'chromium'; `make browser`)")
    out_dir.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_QuietHandler, directory=str(build))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    written = []
    try:
        for shot in shots:
            (build / LOADER).write_text(_loader(shot), encoding="utf-8")
            target = out_dir / f"{shot.name}.png"
            with tempfile.TemporaryDirectory() as profile:
                url = f"http://127.0.0.1:{server.server_address[1]}/{LOADER}"
                subprocess.run(
                    [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
                     f"--window-size={size[0]},{size[1]}", f"--virtual-time-budget={budget_ms}",
                     f"--screenshot={target}", url],
                    check=True, capture_output=True, timeout=180)
            log.info("wrote %s", target)
            written.append(target)
    finally:
        server.shutdown()
        (build / LOADER).unlink(missing_ok=True)
    return written


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sapo_pipeline.viz_shots",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("build", help="a `kedro viz build --include-hooks` folder")
    parser.add_argument("--out", default="docs/viz")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    take(args.build, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
