"""Training cost of the RL methods, from their per-step diagnostics logs.

The methods differ only in rewards and advantages, so SAPO's cost over GRPO should sit in
``advantage_s`` (rewards + advantages) and in the step-normalised aggregation inside ``update_s``.
The summary reports, per method, medians of the per-step timings (robust to a shared, noisy
machine) and three views of the overhead against a reference method (GRPO by default):

* ``step_ratio`` -- median step seconds over the reference's median;
* ``paired_step_ratio`` -- median over steps i of ``step_s[i] / ref_step_s[i]`` (the methods
  sample the same prompts at step i when they share the seed);
* ``token_ratio`` -- median seconds per response token over the reference's, which removes the
  effect of methods drifting to longer or shorter thinking blocks;
* ``advantage_share`` -- (median ``advantage_s`` - reference's) / reference's median step
  seconds: the direct cost of the per-step rewards and advantages.

Steps before ``skip_steps`` (warm-up: allocator, first-call overheads) are left out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

TIMING_COLUMNS = ("rollout_s", "advantage_s", "update_s", "step_s")


def _values(rows: Sequence[Mapping[str, Any]], column: str) -> list[float]:
    out = []
    for row in rows:
        v = row.get(column)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            out.append(float(v))
    return out


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0.0) else None


def method_costs(rows: Sequence[Mapping[str, Any]], skip_steps: int = 1) -> dict[str, Any]:
    """Medians of one method's per-step timings (rows of its RL log)."""
    if not rows:
        raise ValueError("RL log has no rows")
    missing = [c for c in ("step", "step_s", "response_tokens") if c not in rows[0]]
    if missing:
        raise ValueError(f"RL log lacks columns {missing}; has {sorted(rows[0])}")
    kept = [r for r in rows if int(r["step"]) > skip_steps] or list(rows)
    per_token = [float(r["step_s"]) / float(r["response_tokens"])
                 for r in kept if r.get("response_tokens")]
    out: dict[str, Any] = {"steps": len(rows), "steps_summarised": len(kept)}
    for column in TIMING_COLUMNS:
        out[f"median_{column}"] = _median(_values(kept, column))
    out["median_response_tokens"] = _median(_values(kept, "response_tokens"))
    out["median_ms_per_token"] = (1000 * _median(per_token)) if per_token else None
    out["total_s"] = sum(_values(rows, "step_s"))
    return out


def summarise_costs(logs: Mapping[str, Sequence[Mapping[str, Any]]], reference: str = "grpo",
                    skip_steps: int = 1, goal: float = 0.05) -> dict[str, Any]:
    """Per-method costs and their overhead against ``reference`` (see the module docstring).

    ``logs`` maps a method name to its RL log rows (:func:`~.diagnostics.csv_to_log`).
    ``goal``: the largest acceptable relative overhead; ``within_goal`` is judged on
    ``token_ratio`` (the step time per response token), the figure least confounded by what the
    policies generate.
    """
    if reference not in logs:
        raise ValueError(f"cost reference {reference!r} is not among the RL logs {sorted(logs)}")
    methods = {name: method_costs(rows, skip_steps) for name, rows in logs.items()}
    ref = methods[reference]
    ref_steps = {int(r["step"]): float(r["step_s"]) for r in logs[reference]
                 if int(r["step"]) > skip_steps and r.get("step_s")}
    for name, cost in methods.items():
        paired = [float(r["step_s"]) / ref_steps[int(r["step"])] for r in logs[name]
                  if int(r["step"]) in ref_steps and r.get("step_s") is not None]
        adv, ref_adv = cost["median_advantage_s"], ref["median_advantage_s"]
        token_ratio = _ratio(cost["median_ms_per_token"], ref["median_ms_per_token"])
        cost.update(
            step_ratio=_ratio(cost["median_step_s"], ref["median_step_s"]),
            paired_step_ratio=_median(paired),
            token_ratio=token_ratio,
            advantage_share=(None if adv is None or ref_adv is None or not ref["median_step_s"]
                             else (adv - ref_adv) / ref["median_step_s"]),
            within_goal=None if token_ratio is None else token_ratio <= 1.0 + goal,
        )
    return {"reference": reference, "skip_steps": skip_steps, "goal": goal, "methods": methods}


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def render_cost_markdown(summary: Mapping[str, Any]) -> str:
    """The cost summary as a markdown table (one row per method)."""
    ref = summary["reference"]
    lines = [
        f"# RL training cost per step (reference: {ref})",
        "",
        f"Medians over steps > {summary['skip_steps']} of each method's RL log. Ratios are "
        f"against {ref}; `token` = step seconds per response token; `adv share` = extra "
        f"reward+advantage seconds over {ref}'s median step. Goal: token ratio <= "
        f"{1 + summary['goal']:.2f}.",
        "",
        "| method | steps | rollout s | adv ms | update s | step s | tokens | ms/token "
        "| step ratio | paired | token ratio | adv share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in summary["methods"].items():
        adv_ms = None if c["median_advantage_s"] is None else 1000 * c["median_advantage_s"]
        lines.append(
            f"| {name} | {c['steps']} | {_fmt(c['median_rollout_s'], '.2f')} "
            f"| {_fmt(adv_ms, '.1f')} | {_fmt(c['median_update_s'], '.2f')} "
            f"| {_fmt(c['median_step_s'], '.2f')} | {_fmt(c['median_response_tokens'], '.0f')} "
            f"| {_fmt(c['median_ms_per_token'], '.2f')} | {_fmt(c['step_ratio'], '.3f')} "
            f"| {_fmt(c['paired_step_ratio'], '.3f')} | {_fmt(c['token_ratio'], '.3f')} "
            f"| {_fmt(c['advantage_share'], '+.4%')} |")
    lines += ["", "The machine may be shared: the methods run one after the other, so their "
              "timings are not paired in load; compare ratios, not absolute seconds.", ""]
    return "\n".join(lines)


def plot_costs(logs: Mapping[str, Sequence[Mapping[str, Any]]], summary: Mapping[str, Any]) -> Any:
    """A matplotlib Figure (Agg, no pyplot): per method, the median step split into rollout,
    rewards+advantages and the rest of the update (left), and step seconds per RL step (right)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.8))
    left, right = fig.subplots(1, 2)
    names = list(summary["methods"])
    # the parts of a step in greys (left), the methods in colours (right): one meaning per colour
    parts = [("rollout", "median_rollout_s", "#4d4d4d"),
             ("rewards+advantages", "median_advantage_s", "#e08214"),
             ("update (rest)", None, "#bababa")]
    bottom = [0.0] * len(names)
    for label, key, colour in parts:
        vals = []
        for name in names:
            c = summary["methods"][name]
            if key is None:
                v = (c["median_update_s"] or 0.0) - (c["median_advantage_s"] or 0.0)
            else:
                v = c[key] or 0.0
            vals.append(max(v, 0.0))
        left.bar(names, vals, bottom=bottom, label=label, color=colour)
        bottom = [b + v for b, v in zip(bottom, vals)]
    left.set_ylabel("median seconds per RL step")
    left.set_title(f"RL step time (ratio vs {summary['reference']} per response token)",
                   fontsize=9)
    for i, name in enumerate(names):
        ratio = summary["methods"][name]["token_ratio"]
        if ratio is not None:
            left.annotate(f"{ratio:.2f}x", (i, bottom[i]), ha="center", va="bottom", fontsize=8)
    left.set_ylim(0, 1.25 * max(bottom + [1e-9]))  # room for the ratios above the bars
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(parts),
                frameon=False)
    method_colours = ["#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]
    for i, name in enumerate(names):
        rows = [r for r in logs[name] if r.get("step_s") is not None]
        right.plot([int(r["step"]) for r in rows], [float(r["step_s"]) for r in rows],
                   marker=".", label=name, color=method_colours[i % len(method_colours)])
    right.set_xlabel("RL step")
    right.set_ylabel("step seconds")
    right.set_title("seconds per RL step", fontsize=9)
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig
