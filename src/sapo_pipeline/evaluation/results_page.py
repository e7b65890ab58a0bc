"""The results page (``docs/results.md``), generated from the studies' JSON, never typed by hand.

``python -m sapo_pipeline.evaluation.results_page STUDY_JSON [STUDY_JSON ...] --out docs/results.md``
reads the aggregated report of each data set (``study_<split>.json`` written by
:mod:`~.study`) and writes one markdown page, with a figure per data set (NDCG/Recall@10 by
method with their two-level CIs) beside it in ``<out stem>/``. Per data set the page holds:

* the protocol (split, rows, history convention, seeds, how the intervals were made);
* what the paired tests say about SAPO against GRPO, ReRe and its Stage-2 start, in words, with
  the raw and Holm-adjusted p-values (:func:`evidence_lines`);
* the project's learning targets (:data:`TARGETS`) and whether this data set meets them;
* every method and baseline: mean [CI], spread over seeds, coverage;
* the paired tests, the published reference numbers where the study has them;
* wall time per stage (median over the seeds' run roots, from their ``run_timings``);
* the exact commands that rebuild it: each seed's ``kedro run``, the study, this page.
"""

from __future__ import annotations

import json
import logging
import shlex
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sapo_pipeline.evaluation.breakdown import render_by_group

log = logging.getLogger(__name__)

REFERENCE = "sapo"
STAGE_METHODS = ("sid_only", "sft_reasoning", "sft_reasoning_sid")
STAGE_TAGS = ("ingest", "sid_catalog", "teacher_corpus", "baselines", "align", "reason", "rl",
              "evaluate")
GENERATIVE_EXCLUDED = ("sft_reasoning_sid",)  # a diagnostic decode of a reasoning model


@dataclass(frozen=True)
class Targets:
    """The learning targets of issue "Models that learn" for one data set."""

    best_vs_sasrec: float  # best generative model's NDCG@10 >= this x SASRec's
    trained_vs_popularity: float | None = None  # every trained model's NDCG@10 >= this x pop.


TARGETS: dict[str, Targets] = {"embedded_default": Targets(0.8, 3.0)}
DEFAULT_TARGETS = Targets(0.7)


def _fmt_p(p: float) -> str:
    return "< .001" if p < 0.001 else f"{p:.3f}".lstrip("0")


def _pair(report: dict[str, Any], a: str, b: str, metric: str) -> dict[str, Any] | None:
    for t in report["paired_tests"]:
        if t["metric"] == metric and {t["reference"], t["other"]} == {a, b}:
            return t
    return None


def _start_of(report: dict[str, Any]) -> str | None:
    names = {m["method"] for m in report["methods"]}
    return "sft_reasoning" if "sft_reasoning" in names else None


def top_k(report: dict[str, Any]) -> int:
    """The largest K the report has (10 in every real configuration)."""
    return int(max(report.get("ks") or [10]))


def evidence_lines(report: dict[str, Any], metric: str | None = None,
                   alpha: float = 0.05) -> list[str]:
    """Plain statements of the paired tests that answer the study's question (default metric:
    NDCG at the largest K)."""
    metric = metric or f"ndcg@{top_k(report)}"
    rl = [m["method"] for m in report["methods"]
          if not m.get("baseline") and m["method"] not in STAGE_METHODS]  # RL runs, ablations
    start = _start_of(report)
    wanted = [(REFERENCE, o) for o in rl if o != REFERENCE and REFERENCE in rl]
    wanted += [(m, start) for m in rl if start]
    out = []
    for a, b in wanted:
        t = _pair(report, a, b, metric)
        if t is None:
            continue
        sign = 1.0 if t["reference"] == a else -1.0
        diff, low, high = (sign * t["mean_diff"], sign * t["low"], sign * t["high"])
        low, high = min(low, high), max(low, high)
        if t["p_holm"] < alpha:
            verdict = f"**{a} is {'better' if diff > 0 else 'worse'}** (Holm-adjusted p < {alpha})"
        elif t["p_value"] < alpha:
            verdict = (f"a difference at raw p < {alpha} that does **not** survive the Holm "
                       "adjustment")
        else:
            verdict = "**no detectable difference**"
        label = f"{a} - {b}" + (" (its Stage-2 start)" if b == start else "")
        out.append(f"- {label}: {diff:+.4f} {metric} [{low:+.4f}, {high:+.4f}], p = "
                   f"{_fmt_p(t['p_value'])} raw, {_fmt_p(t['p_holm'])} Holm: {verdict}.")
    return out


def target_lines(report: dict[str, Any], metric: str | None = None) -> list[str]:
    """Whether the data set meets its learning targets (:data:`TARGETS`)."""
    metric = metric or f"ndcg@{top_k(report)}"
    targets = TARGETS.get(report["dataset"], DEFAULT_TARGETS)
    mean = {m["method"]: m["metrics"][metric]["mean"] for m in report["methods"]}
    base = {m["method"] for m in report["methods"] if m.get("baseline")}
    trained = [m for m in mean if m not in base and m not in GENERATIVE_EXCLUDED]
    out = []
    if "sasrec" in mean and trained and mean["sasrec"] > 0:
        best = max(trained, key=mean.__getitem__)
        ratio = mean[best] / mean["sasrec"]
        ok = "met" if ratio >= targets.best_vs_sasrec else "**missed**"
        out.append(f"- Best generative model ({best}) {mean[best]:.4f} = {ratio:.2f}x SASRec's "
                   f"{mean['sasrec']:.4f} (target >= {targets.best_vs_sasrec}x): {ok}.")
    if targets.trained_vs_popularity and "popularity" in mean and trained and mean["popularity"]:
        worst = min(trained, key=mean.__getitem__)
        ratio = mean[worst] / mean["popularity"]
        ok = "met" if ratio >= targets.trained_vs_popularity else "**missed**"
        out.append(f"- Weakest trained model ({worst}) = {ratio:.1f}x popularity (target >= "
                   f"{targets.trained_vs_popularity}x for every trained model): {ok}.")
    return out


def _cell(d: dict[str, Any]) -> str:
    return f"{d['mean']:.4f} [{d['low']:.4f}, {d['high']:.4f}]"


def method_rows(report: dict[str, Any], k: int | None = None) -> list[dict[str, Any]]:
    """One dict per method and baseline: NDCG/Recall@k (default: the largest K) with CI, spread
    over seeds, coverage@k (a table: ``polars.DataFrame(method_rows(report))``)."""
    k = k or top_k(report)
    rows = []
    for m in report["methods"]:
        spread = (m.get("seed_spread") or {}).get(f"ndcg@{k}")
        row = {"method": m["method"], "baseline": bool(m.get("baseline")),
               "seeds": m.get("n_seeds", 1)}
        for name in (f"ndcg@{k}", f"recall@{k}"):
            cell = m["metrics"][name]
            row.update({name: cell["mean"], f"{name} low": cell["low"],
                        f"{name} high": cell["high"]})
        row[f"ndcg@{k} sd over seeds"] = (spread["std"] if spread and spread.get("n_seeds", 0) > 1
                                          else None)
        row[f"coverage@{k}"] = m["coverage"][f"coverage@{k}"]
        rows.append(row)
    return rows


def method_table(report: dict[str, Any], k: int | None = None) -> list[str]:
    """:func:`method_rows` as markdown."""
    k = k or top_k(report)
    out = [f"| method | seeds | NDCG@{k} [95% CI] | sd over seeds | Recall@{k} [95% CI] | "
           f"coverage@{k} |", "| --- | --- | --- | --- | --- | --- |"]
    for r in method_rows(report, k):
        cells = {n: {"mean": r[n], "low": r[f"{n} low"], "high": r[f"{n} high"]}
                 for n in (f"ndcg@{k}", f"recall@{k}")}
        sd = r[f"ndcg@{k} sd over seeds"]
        label = f"{r['method']} (baseline)" if r["baseline"] else r["method"]
        out.append(f"| {label} | {r['seeds']} | {_cell(cells[f'ndcg@{k}'])} | "
                   f"{'-' if sd is None else f'{sd:.4f}'} | {_cell(cells[f'recall@{k}'])} | "
                   f"{r[f'coverage@{k}']:.3f} |")
    return out


def paired_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per paired test (``polars.DataFrame(paired_rows(report))``)."""
    return [{"comparison": f"{t['reference']} - {t['other']}", "metric": t["metric"],
             "diff": t["mean_diff"], "low": t["low"], "high": t["high"], "p": t["p_value"],
             "p_holm": t["p_holm"], "wins": t["wins"], "losses": t["losses"], "ties": t["ties"]}
            for t in report["paired_tests"]]


def paired_table(report: dict[str, Any]) -> list[str]:
    """:func:`paired_rows` as markdown."""
    out = ["| comparison | metric | diff [95% CI] | p | p (Holm) | wins/losses/ties |",
           "| --- | --- | --- | --- | --- | --- |"]
    for t in paired_rows(report):
        out.append(f"| {t['comparison']} | {t['metric']} | {t['diff']:+.4f} "
                   f"[{t['low']:+.4f}, {t['high']:+.4f}] | {_fmt_p(t['p'])} | "
                   f"{_fmt_p(t['p_holm'])} | {t['wins']}/{t['losses']}/{t['ties']} |")
    return out


def find_reports(root: str | Path) -> list[Path]:
    """The reports below a run root, for the notebooks: its own comparison reports
    (``08_reporting/evaluation_<split>.json``, ``ablations_<split>.json``) then every study
    (``study_<split>.json``, ``ablations_study_<split>.json``)."""
    root = Path(root)
    own = sorted(p for pattern in ("evaluation_*.json", "ablations_*.json")
                 for p in (root / "08_reporting").glob(pattern))
    return own + sorted(p for p in root.rglob("*study_*.json") if p.is_file())


def run_records(root: Path, ablations: bool | None = None) -> list[dict[str, Any]]:
    """The timing records of the ``kedro run`` calls that wrote into ``root``, oldest first;
    ``ablations``: only the ablations pipeline's (True) or all but those (False)."""
    files = sorted((root / "08_reporting" / "run_timings").glob("*.json"))
    records = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    if ablations is None:
        return records
    return [r for r in records
            if (r.get("run", {}).get("pipeline_names") == ["ablations"]) == ablations]


def stage_seconds(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Seconds per stage tag of one run root built by one or several ``kedro run`` calls: each
    node counts once, with its latest run (a node run again replaces its earlier time), under
    every stage tag it carries."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        for node in record.get("nodes", []):
            latest[node["node"]] = node
    out: dict[str, float] = {}
    for node in latest.values():
        for tag in node.get("tags", []):
            if tag in STAGE_TAGS:
                out[tag] = out.get(tag, 0.0) + float(node["seconds"])
    return out


def timing_lines(roots: Sequence[Path], ablations: bool | None = None) -> list[str]:
    """Wall time per stage, median over the run roots that ran it (seconds); ``ablations`` as
    in :func:`run_records`."""
    per_root = [stage_seconds(run_records(root, ablations)) for root in roots]
    per_root = [r for r in per_root if r]
    if not per_root:
        return ["No timing records in the runs (run through `kedro run` to get them)."]
    tags = [t for t in STAGE_TAGS if any(t in r for r in per_root)]
    head = "| | " + " | ".join(tags) + " | sum |"
    out = [f"Median over the {len(per_root)} run root(s) that ran each stage, seconds, as "
           "measured (a run that shared the machine with another is slower):", "", head,
           "|" + " --- |" * (len(tags) + 2)]
    cells = [statistics.median(r[t] for r in per_root if t in r) for t in tags]
    total = statistics.median(sum(r.values()) for r in per_root)
    out.append("| wall s | " + " | ".join(f"{c:.0f}" for c in cells) + f" | {total:.0f} |")
    return out


def kedro_command(record: dict[str, Any] | None) -> str:
    """The ``kedro run`` that made a run, from its timing record."""
    if record is None:
        return "(no timing record: command unknown)"
    run = record.get("run", {})
    parts = ["kedro", "run", "--pipelines=" + ",".join(run.get("pipeline_names") or ["sapo_full"])]
    if run.get("env"):
        parts += ["--env", str(run["env"])]
    for option, key in (("--namespaces", "namespaces"), ("--tags", "tags"),
                        ("--nodes", "node_names"), ("--from-nodes", "from_nodes"),
                        ("--to-nodes", "to_nodes")):
        if run.get(key):
            parts += [f"{option}=" + ",".join(map(str, run[key]))]
    params = _flatten(run.get("runtime_params") or {})
    if params:
        parts += ["--params", ",".join(f"{k}={v}" for k, v in params.items())]
    code = run.get("code")
    where = (f"  # code {code['commit'][:10]}{' + local changes' if code['dirty'] else ''}"
             if code else "  # code version not recorded")
    return shlex.join(parts) + where


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (how ``--params`` spells nested keys)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def dataset_section(report: dict[str, Any], study_path: Path, figure: str) -> list[str]:
    """The page's section for one data set."""
    roots = [Path(r) for r in report.get("run_roots", [])]
    n_seeds = max((m.get("n_seeds", 1) for m in report["methods"]), default=1)
    rows = f"{report['n_rows']}"
    if report.get("rows_in_split") and report["rows_in_split"] != report["n_rows"]:
        rows += f" (seeded subset of {report['rows_in_split']})"
    ablations = report.get("report_name") == "ablations"
    out = [f"## {report['dataset']}" + (": the ablations of SAPO" if ablations else ""), "",
           f"- Split: {report['split']}, {rows} rows; {report['convention']}.",
           f"- Seeds: {n_seeds} (run roots: {', '.join(f'`{r}`' for r in roots)}).",
           f"- Intervals: {report.get('ci_method') or 'bootstrap over rows'}; paired tests on "
           "the same rows, each row averaged over the seeds, Holm-adjusted over the family.",
           f"- Catalog: {report['collision_note']}."]
    out += [f"- Note: {n}" for n in report.get("notes", [])
            if not n.startswith(("CIs:", f"{len(roots)} runs"))]  # said above
    out += [""]
    if n_seeds == 1:
        out += ["**1 seed only**: single-run numbers; the paired tests cover row "
                "sampling, not the spread between seeds.", ""]
    elif n_seeds < 3:
        out += [f"**{n_seeds} seeds only** (the study asks 3): the interval over seeds rests on "
                f"{n_seeds} runs; the paired tests cover row sampling of the seed-averaged rows.",
                ""]
    out += [f"### What the evidence says (NDCG@{top_k(report)})", ""] + (evidence_lines(report)
                                                        or ["- No RL comparison in this study."])
    if not ablations:
        out += ["", "### Learning targets", ""] + (target_lines(report) or ["- No baselines."])
    out += ["", "### Every method and baseline", ""] + method_table(report)
    out += ["", f"![NDCG and Recall by method, {report['dataset']}]({figure})", ""]
    out += ["### Paired tests", ""] + paired_table(report)
    out += render_by_group(report.get("paired_by_group") or {},
                           round(100 * report.get("confidence", 0.95)))
    pub = report.get("published_reference")
    if pub:
        cols = pub["columns"]
        out += ["", f"### Published numbers ({pub['dataset']}; context only, not our runs: "
                "other code, backbone, and the original train split)", "",
                f"Source: {pub['source']}.", "", "| published method | " + " | ".join(cols) + " |",
                "|" + " --- |" * (len(cols) + 1)]
        out += [f"| {r['method']} | " + " | ".join(f"{r[c]:.4f}" for c in cols) + " |"
                for r in pub["rows"]]
    out += ["", "### Wall time per stage" + (" (the ablations pipeline)" if ablations else ""),
            ""] + timing_lines(roots, ablations)
    study_cmd = shlex.join(["python", "-m", "sapo_pipeline.evaluation.study", *map(str, roots),
                            "--dataset", report["dataset"], "--split", report["split"],
                            *(["--report", "ablations"] if ablations else []),
                            "--n-bootstrap", str(report.get("n_bootstrap", 1000)),
                            "--out", str(study_path.parent)])
    out += ["", "### Reproduce", "", "```bash"]
    runs = [kedro_command(r) for root in roots
            for r in run_records(root, None if ablations else False)] or [
        "(no timing records: the runs' commands are unknown)"]
    out += runs + [study_cmd, "```", ""]
    return out


def build_page(studies: Sequence[str | Path], out: str | Path) -> list[Path]:
    """Write the page and its figures; returns the paths written."""
    from sapo_pipeline.evaluation.report import plot_report
    from sapo_pipeline.io_utils import atomic_path, write_text_atomically

    out = Path(out)
    fig_dir = out.with_suffix("")
    fig_dir.mkdir(parents=True, exist_ok=True)
    cmd = shlex.join(["python", "-m", "sapo_pipeline.evaluation.results_page",
                      *map(str, studies), "--out", str(out)])
    lines = ["# Results", "",
             "Generated from the studies' JSON by the command below; do not edit by hand.", "",
             "```bash", cmd, "```", ""]
    written = []
    for study in map(Path, studies):
        report = json.loads(study.read_text(encoding="utf-8"))
        kind = report.get("report_name", "evaluation")
        png = fig_dir / (f"{report['dataset']}_{report['split']}.png" if kind == "evaluation"
                         else f"{report['dataset']}_{kind}_{report['split']}.png")
        with atomic_path(png) as tmp:
            plot_report(report).savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        written.append(png)
        lines += dataset_section(report, study, f"{fig_dir.name}/{png.name}")
    write_text_atomically(out, "\n".join(lines).rstrip() + "\n")
    return [out, *written]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sapo_pipeline.evaluation.results_page STUDY_JSON ... --out docs/results.md``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sapo_pipeline.evaluation.results_page",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="+", help="study_<split>.json files, one per data set")
    parser.add_argument("--out", default="docs/results.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in build_page(args.studies, args.out):
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
