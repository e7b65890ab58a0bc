"""Per-step RL diagnostics: accumulation across minibatches and processes, CSV, figures.

Columns of a row (steps k = 1..K are the SID levels, 1-based in the names):

* ``reward_step{k}`` -- mean over the step's responses of the prefix-conditioned per-level reward
  r_{.,k} = prod_{j<=k} 1[s_j = s*_j], whatever the algorithm (comparable across methods);
  ``reward_step{K}`` is the exact-match rate. ``reward`` -- mean of the algorithm's own scalar
  reward (GRPO exact / prefix, ReRe with penalty, SAPO r_{.,K} of its reward mode).
* ``adv_mean_step{k}`` / ``adv_std_step{k}`` -- mean and (population) std over responses of the
  advantage applied to step k (outcome methods: the same advantage on every step).
* ``zero_var_step{k}`` -- share of groups whose rewards behind step k's advantage have zero
  variance (these get zero advantage).
* ``kl`` -- mean k3 KL to the reference over loss-carrying tokens (0 when beta = 0);
  ``clip_frac`` -- share of loss-carrying tokens whose clipped branch is the minimum;
  ``entropy`` -- mean full-vocabulary entropy of the policy at the sampled tokens;
  ``neg_logp`` -- mean -log pi_theta of the sampled tokens (averaged over the update passes).
* ``loss``, ``grad_norm`` (mean over the step's optimizer steps, before clipping), ``lr``.
* ``response_tokens``, ``loss_token_share`` (sampled / response tokens), ``tokens_per_s``
  (response tokens / step seconds), ``rollout_s``, ``update_s`` (everything after the rollout,
  including ``advantage_s``: rewards and advantages, the part where the methods differ),
  ``step_s`` = rollout + update.
* ``eval_reward_step{k}`` on evaluation steps (empty otherwise); ``eval_ndcg`` /
  ``eval_recall`` -- NDCG@B / Recall@B of the same valid prompts by the evaluation's beam search
  (``eval_num_beams`` = B); ``rollout_*`` -- the sampler's own stats (main process).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from sapo_pipeline.io_utils import csv_to_rows, rows_to_csv

#: Columns that are always integers.
INT_COLUMNS = frozenset({"step", "optimizer_steps", "response_tokens"})


def log_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as CSV; columns = every key, in order of first appearance; empty cell for None."""
    return rows_to_csv(rows)


def csv_to_log(text: str) -> list[dict[str, Any]]:
    """Inverse of :func:`log_to_csv` (numbers parsed; empty cells are None)."""
    return csv_to_rows(text, INT_COLUMNS)


class StepAccumulator:
    """Sums of one RL step on one process; :meth:`finish` reduces them into a row."""

    def __init__(self, levels: int, device: torch.device) -> None:
        self.k = levels
        z = lambda n=1: torch.zeros(n, dtype=torch.float64, device=device)  # noqa: E731
        self.parts: dict[str, torch.Tensor] = {
            "responses": z(), "groups": z(), "reward": z(), "level_reward": z(levels),
            "adv": z(levels), "adv_sq": z(levels), "zero_var": z(levels),
            "response_tokens": z(), "loss_tokens": z(), "update_tokens": z(), "kl": z(),
            "clipped": z(), "entropy": z(), "neg_logp": z(), "loss": z(), "minibatches": z(),
            "grad_norm": z(),
        }

    def add(self, name: str, value: torch.Tensor | float) -> None:
        v = value.detach().double() if isinstance(value, torch.Tensor) else value
        self.parts[name] += v

    def add_rollout(self, level_reward: torch.Tensor, reward: torch.Tensor,
                    step_adv: torch.Tensor, zero_var: torch.Tensor, present: torch.Tensor,
                    response_mask: torch.Tensor, loss_mask: torch.Tensor) -> None:
        self.add("responses", float(level_reward.shape[0]))
        self.add("groups", present.sum())
        self.add("reward", reward.sum())
        self.add("level_reward", level_reward.sum(dim=0))
        self.add("adv", step_adv.sum(dim=0))
        self.add("adv_sq", (step_adv.double() ** 2).sum(dim=0))
        self.add("zero_var", (zero_var & present[:, None]).sum(dim=0))
        self.add("response_tokens", response_mask.sum())
        self.add("loss_tokens", loss_mask.sum())

    def add_update(self, mask: torch.Tensor, kl: torch.Tensor, clipped: torch.Tensor,
                   entropy: torch.Tensor, logp: torch.Tensor) -> None:
        self.add("update_tokens", mask.sum())
        self.add("kl", kl[mask].sum())
        self.add("clipped", clipped.sum())
        self.add("entropy", entropy[mask].sum())
        self.add("neg_logp", -logp.detach()[mask].sum())

    def finish(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor],
               world: int) -> dict[str, float]:
        """Reduce over processes (``reduce_sum``) and turn sums into the row's means."""
        names = list(self.parts)
        flat = reduce_sum(torch.cat([self.parts[n] for n in names]))
        out, i = {}, 0
        for n in names:
            size = self.parts[n].numel()
            out[n] = flat[i:i + size].cpu().tolist()
            i += size
        g = lambda n: out[n][0]  # noqa: E731
        n, groups = max(g("responses"), 1.0), max(g("groups"), 1.0)
        toks = g("update_tokens")
        mbs = g("minibatches") / world
        row: dict[str, float] = {"reward": g("reward") / n}
        for k in range(self.k):
            row[f"reward_step{k + 1}"] = out["level_reward"][k] / n
        for k in range(self.k):
            mean = out["adv"][k] / n
            row[f"adv_mean_step{k + 1}"] = mean
            row[f"adv_std_step{k + 1}"] = math.sqrt(max(out["adv_sq"][k] / n - mean * mean, 0.0))
        for k in range(self.k):
            row[f"zero_var_step{k + 1}"] = out["zero_var"][k] / groups
        row.update(
            kl=g("kl") / toks if toks else None,
            clip_frac=g("clipped") / toks if toks else None,
            entropy=g("entropy") / toks if toks else None,
            neg_logp=g("neg_logp") / toks if toks else None,
            loss=g("loss") / mbs if mbs else None,
            grad_norm=g("grad_norm") / world / mbs if mbs else None,
            response_tokens=int(g("response_tokens")),
            loss_token_share=g("loss_tokens") / max(g("response_tokens"), 1.0),
        )
        return row


def plot_diagnostics(rows: Sequence[dict[str, Any]], title: str = "") -> Any:
    """A grid of the per-step curves (matplotlib Figure, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("step") is not None]
    steps = [r["step"] for r in rows]
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]

    def series(name: str) -> list[float]:
        return [math.nan if r.get(name) is None else float(r[name]) for r in rows]

    def levels(prefix: str) -> list[str]:
        return [c for c in cols if c.startswith(prefix) and c[len(prefix):].isdigit()]

    panels = [
        ("reward per SID level", levels("reward_step") + ["reward"]),
        ("valid reward per level (points: each evaluation)", levels("eval_reward_step")),
        ("valid NDCG / Recall@B, beam search (points)", ["eval_ndcg", "eval_recall"]),
        ("advantage std per step", levels("adv_std_step")),
        ("zero-variance groups per step", levels("zero_var_step")),
        ("KL to reference (k3)", ["kl"]),
        ("clip fraction", ["clip_frac"]),
        ("entropy / -log p (sampled tokens)", ["entropy", "neg_logp"]),
        ("grad norm", ["grad_norm"]),
        ("seconds per step", ["rollout_s", "update_s", "step_s"]),
        ("response tokens / s", ["tokens_per_s"]),
    ]
    panels = [(t, [c for c in names if c in cols]) for t, names in panels]
    panels = [(t, names) for t, names in panels if names]
    ncols = 3
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax, (t, names) in zip(axes.flat, panels):
        for name in names:
            ys = series(name)
            pts = [(x, y) for x, y in zip(steps, ys) if not math.isnan(y)]
            if pts:
                xs, vs = zip(*pts)
                if name.startswith("eval_"):  # measured every eval_every steps: points only
                    ax.plot(xs, vs, linestyle="none", marker="o", markersize=4, label=name)
                else:
                    ax.plot(xs, vs, marker="." if len(pts) < 30 else None, label=name)
        _style(ax, t, legend=len(names) > 1)
    return _finish(fig, axes, len(panels), title)


def _style(ax: Any, title: str, legend: bool) -> None:
    """A panel's title, axis label, tick size and legend (the grids of this module)."""
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("RL step", fontsize=8)
    ax.tick_params(labelsize=7)
    if legend:
        ax.legend(fontsize=6)


def _finish(fig: Any, axes: Any, used: int, title: str) -> Any:
    """Blank the unused panels of a grid, set the title, lay it out."""
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


#: Panels of :func:`plot_methods`: (title, column prefix of a per-level family, or a column).
COMPARE_PANELS: tuple[tuple[str, str], ...] = (
    ("reward per SID level (train rollouts)", "reward_step*"),
    ("advantage mean per step", "adv_mean_step*"),
    ("advantage std per step", "adv_std_step*"),
    ("zero-variance groups per step", "zero_var_step*"),
    ("valid NDCG@B, beam search (points)", "eval_ndcg"),
    ("KL to reference (k3)", "kl"),
    ("clip fraction", "clip_frac"),
    ("entropy (sampled tokens)", "entropy"),
    ("grad norm", "grad_norm"),
)


def plot_methods(logs: dict[str, Sequence[dict[str, Any]]], title: str = "") -> Any:
    """The RL methods side by side (matplotlib Figure, Agg, no pyplot): one panel per
    :data:`COMPARE_PANELS` entry, one colour per method, one line style per SID level."""
    from matplotlib.figure import Figure

    styles = ("-", "--", ":", "-.")
    colours = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")
    logs = {m: [r for r in rows if r.get("step") is not None] for m, rows in logs.items()}
    present = {c for rows in logs.values() for r in rows for c in r}

    def columns(spec: str) -> list[str]:
        if not spec.endswith("*"):
            return [spec] if spec in present else []
        prefix = spec[:-1]
        return sorted((c for c in present if c.startswith(prefix) and c[len(prefix):].isdigit()),
                      key=lambda c: int(c[len(prefix):]))

    panels = [(t, columns(spec)) for t, spec in COMPARE_PANELS]
    panels = [(t, cols) for t, cols in panels if cols]
    ncols = 3
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = Figure(figsize=(4.4 * ncols, 3.1 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (t, cols) in zip(axes.flat, panels):
        for i, (method, rows) in enumerate(logs.items()):
            for j, col in enumerate(cols):
                pts = [(r["step"], float(r[col])) for r in rows if r.get(col) is not None
                       and not (isinstance(r[col], float) and math.isnan(r[col]))]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                label = method if len(cols) == 1 else f"{method} L{j + 1}"
                kw = ({"linestyle": "none", "marker": "o", "markersize": 4}
                      if col.startswith("eval_") else {"linestyle": styles[j % len(styles)]})
                ax.plot(xs, ys, color=colours[i % len(colours)], label=label, **kw)
        _style(ax, t, legend=True)
    return _finish(fig, axes, len(panels), title)
