"""RL training-cost summary: medians, ratios against the reference, warm-up skipping, table."""

import pytest

from sapo_pipeline.rl.cost import method_costs, plot_costs, render_cost_markdown, summarise_costs
from sapo_pipeline.rl.diagnostics import csv_to_log, log_to_csv


def _log(step_s, tokens, adv_s):
    return [{"step": i + 1, "rollout_s": s / 2, "advantage_s": a, "update_s": s / 2,
             "step_s": s, "response_tokens": t}
            for i, (s, t, a) in enumerate(zip(step_s, tokens, adv_s))]


GRPO = _log([9.0, 2.0, 4.0, 3.0], [100, 100, 200, 100], [0.010, 0.001, 0.001, 0.001])
SAPO = _log([9.0, 2.2, 4.0, 3.3], [100, 100, 100, 100], [0.010, 0.003, 0.003, 0.003])


def test_method_costs_skips_warmup_and_takes_medians():
    c = method_costs(GRPO, skip_steps=1)
    assert c["steps"] == 4 and c["steps_summarised"] == 3
    assert c["median_step_s"] == 3.0                       # of 2, 4, 3 (9 is warm-up)
    assert c["median_rollout_s"] == 1.5
    assert c["median_ms_per_token"] == pytest.approx(20.0)  # of 20, 20, 30 ms
    assert c["total_s"] == pytest.approx(18.0)             # total counts every step


def test_summarise_costs_ratios_against_reference():
    s = summarise_costs({"grpo": GRPO, "sapo": SAPO}, reference="grpo", goal=0.05)
    g, p = s["methods"]["grpo"], s["methods"]["sapo"]
    assert g["step_ratio"] == g["paired_step_ratio"] == g["token_ratio"] == 1.0
    assert g["advantage_share"] == 0.0 and g["within_goal"] is True
    assert p["step_ratio"] == pytest.approx(3.3 / 3.0)
    assert p["paired_step_ratio"] == pytest.approx(1.1)     # 2.2/2, 4/4, 3.3/3 -> median 1.1
    assert p["token_ratio"] == pytest.approx(33.0 / 20.0)  # 22, 40, 33 ms vs 20, 20, 30
    assert p["advantage_share"] == pytest.approx(0.002 / 3.0)
    assert p["within_goal"] is False


def test_summarise_costs_round_trips_through_the_csv_log():
    rows = csv_to_log(log_to_csv(SAPO))
    assert summarise_costs({"grpo": csv_to_log(log_to_csv(GRPO)), "sapo": rows}) == \
        summarise_costs({"grpo": GRPO, "sapo": SAPO})


def test_missing_advantage_column_gives_none_not_a_number():
    old = [{k: v for k, v in r.items() if k != "advantage_s"} for r in GRPO]
    s = summarise_costs({"grpo": old, "sapo": SAPO})
    assert s["methods"]["grpo"]["median_advantage_s"] is None
    assert s["methods"]["sapo"]["advantage_share"] is None


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="cost reference 'grpo'"):
        summarise_costs({"sapo": SAPO})
    with pytest.raises(ValueError, match="no rows"):
        method_costs([])
    with pytest.raises(ValueError, match="lacks columns"):
        method_costs([{"step": 1}])


def test_markdown_has_one_row_per_method():
    md = render_cost_markdown(summarise_costs({"grpo": GRPO, "sapo": SAPO, "rere": GRPO}))
    rows = [line for line in md.splitlines() if line.startswith("| ") and "method" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["grpo", "sapo", "rere"]
    assert "| 1.650 |" in md                                # sapo's token ratio


def test_plot_costs_draws_one_bar_stack_and_curve_per_method():
    logs = {"grpo": GRPO, "sapo": SAPO}
    fig = plot_costs(logs, summarise_costs(logs))
    left, right = fig.axes
    assert len(right.lines) == 2
    assert len(left.patches) == 2 * 3  # methods x (rollout, advantages, rest of update)
    # one meaning per colour: the step parts (left) and the methods (right) share none
    from matplotlib.colors import to_hex

    part_colours = {to_hex(p.get_facecolor()) for p in left.patches}
    method_colours = {to_hex(line.get_color()) for line in right.lines}
    assert len(part_colours) == 3 and len(method_colours) == 2
    assert not part_colours & method_colours
    # the legend sits below the bars, not over them
    assert left.get_legend().get_bbox_to_anchor().y0 < left.get_window_extent().y0
