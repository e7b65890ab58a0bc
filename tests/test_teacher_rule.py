"""Rule teacher, SID hierarchy, prompts and corpus builders on a small hand-made catalog."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
import yaml

from sapo_pipeline.config_utils import ConfigError, from_dict
from sapo_pipeline.data.schema import SAMPLE_SCHEMA
from sapo_pipeline.sid.catalog import build_sid_table, format_sid, sid_token
from sapo_pipeline.teacher.base import Outcome
from sapo_pipeline.teacher.config import RuleTeacherConfig, TeacherCorpusConfig
from sapo_pipeline.teacher.corpus import (
    CORPUS_SCHEMA,
    build_alignment_corpus,
    build_context,
    build_reasoning_corpus,
    reasoning_requests,
    split_samples,
)
from sapo_pipeline.teacher.hierarchy import Hierarchy, HierarchyConfig, build_hierarchy
from sapo_pipeline.teacher.layout import parse_steps
from sapo_pipeline.teacher.prompts import ALIGNMENT_TASKS, PromptConfig, PromptRenderer
from sapo_pipeline.teacher.rule import RuleTeacher

from kedro_helpers import resolved_config

REPO = Path(__file__).resolve().parents[1]
SID_TEXT = re.compile(r"<\s*[a-zA-Z]\s*_\s*\d+\s*>")
TOPS = [("Writing", ["Gel Pens", "Pencils"]), ("Lab", ["Beakers", "Gloves"])]
BRANDS = ["Acme", "Zorbo", "Quill"]


def make_items() -> pl.DataFrame:
    rows = []
    for i in range(12):
        top, subs = TOPS[i // 6]
        sub = subs[(i // 3) % 2]
        brand = BRANDS[i % 3]
        rows.append({"item_id": i, "asin": f"A{i:03d}",
                     "title": f"{brand} {sub[:-1]} Deluxe Model {i}, Blue",
                     "brand": brand, "categories": ["Office", top, sub],
                     "description": f"A {sub.lower()} item. It is great. Really great for work.",
                     "source_item_id": None})
    rows[10]["title"] = ""  # no title: title tasks skip it (counted)
    rows[10]["description"] = None
    rows[11]["title"] = "Tricky <a_0><b_0><c_0> Glove </think> Pack"  # SID-like text in a title
    return pl.DataFrame(rows, schema={"item_id": pl.Int64, "asin": pl.Utf8, "title": pl.Utf8,
                                      "brand": pl.Utf8, "categories": pl.List(pl.Utf8),
                                      "description": pl.Utf8, "source_item_id": pl.Int64})


def make_sid_table() -> pl.DataFrame:
    return build_sid_table(list(range(12)), [[i // 6, (i // 3) % 2, i % 3] for i in range(12)])


def make_samples() -> pl.DataFrame:
    spec = [  # (history, target, split)
        ([0, 1], 2, "train"), ([0], 3, "train"), ([6, 7], 8, "train"), ([6], 9, "train"),
        ([1, 2, 3], 4, "train"), ([9, 10], 11, "train"), ([4], 10, "train"), ([5, 0], 6, "train"),
        ([8], 1, "train"), ([2, 7], 5, "train"),
        ([3, 4], 5, "valid"), ([7, 8], 9, "valid"), ([11], 6, "valid"),
        ([0, 5], 7, "test"), ([9], 3, "test"), ([1], 11, "test"),
    ]
    return pl.DataFrame(
        {"sample_id": list(range(len(spec))), "user_id": [f"u{i}" for i in range(len(spec))],
         "history": [h for h, _, _ in spec], "target": [t for _, t, _ in spec],
         "timestamp": list(range(len(spec))), "split": [s for _, _, s in spec]},
        schema=SAMPLE_SCHEMA)


@pytest.fixture(scope="module")
def tables():
    items, sids = make_items(), make_sid_table()
    return items, make_samples(), sids, build_hierarchy(items, sids, HierarchyConfig())


def small_cfg(**alignment) -> TeacherCorpusConfig:
    alignment = {"tasks": list(ALIGNMENT_TASKS), **alignment}  # every task, not the default mix
    return from_dict(TeacherCorpusConfig, {
        "alignment": {"max_train_per_task": 50, "max_valid_per_task": 50, **alignment},
        "reasoning": {"max_train": 50, "max_valid": 50}})


# -- hierarchy ---------------------------------------------------------------------------------
def test_hierarchy_summaries(tables):
    table = tables[3]
    assert table.height == 2 + 4  # 2 level-1 prefixes, 4 level-2 prefixes
    h = Hierarchy.from_table(table, levels=3)
    writing = h.summary((0,))
    assert writing.n_items == 6 and writing.categories[0] == ("Writing", 1.0)
    assert "Office" not in [c for c, _ in writing.categories]  # carried by every item: no signal
    assert h.summary((0, 1)).label(avoid=["Writing"]) == "Pencils"
    assert h.summary((1, 0)).label(avoid=["Lab"]) == "Beakers"
    all_words = {w for row in table["words"] for w in row}
    assert not all_words & {b.lower() for b in BRANDS}  # brands are brands, not words
    assert [s.prefix for s in h.summaries((1, 1, 2))] == [(1,), (1, 1)]
    with pytest.raises(KeyError, match="no hierarchy entry"):
        h.summary((5,))
    with pytest.raises(ValueError, match="levels"):
        h.summaries((0, 1))


# -- rule teacher ------------------------------------------------------------------------------
def test_reasoning_blocks_reason_per_level_and_never_spell_sids(tables):
    items, samples, sids, table = tables
    ctx = build_context(items, sids, table, PromptConfig())
    teacher = RuleTeacher(seed=0)
    reqs = reasoning_requests(ctx, samples)
    outcomes = teacher.reason_steps_batch(reqs)
    assert all(o.ok for o in outcomes)
    for req, o in zip(reqs, outcomes):
        blocks = o.value
        assert len(blocks) == 3
        text = " ".join(blocks)
        assert not SID_TEXT.search(text), text
        for level, code in enumerate(req.codes):
            assert sid_token(level, code) not in text
        top, sub = req.target.categories[1], req.target.categories[2]
        assert top in blocks[0]  # block 1: the broad group of the level-1 prefix
        assert sub in blocks[1]  # block 2: the sub-type of the level-2 prefix
        if req.target.title and "Tricky" not in req.target.title:
            assert req.target.title.split(",")[0] in blocks[2]  # block 3: the item itself
    assert teacher.stats.to_dict()["accepted"] == {"reason_steps": len(reqs)}


def test_four_level_sids_get_four_blocks(tables):
    items, samples, _, _ = tables
    sids = build_sid_table(list(range(12)), [[i // 6, (i // 3) % 2, i % 2, i] for i in range(12)])
    cfg = small_cfg()
    ctx = build_context(items, sids, build_hierarchy(items, sids), cfg.prompts)
    corpus, _ = build_reasoning_corpus(ctx, samples, RuleTeacher(), cfg)
    assert corpus.height == 13
    for resp in corpus["response"]:
        blocks, _ = parse_steps(resp, levels=4)
        assert len(set(blocks)) == 4 and not SID_TEXT.search(" ".join(blocks))


def test_rule_teacher_is_deterministic_and_varied(tables):
    items, samples, sids, table = tables
    ctx = build_context(items, sids, table, PromptConfig())
    reqs = reasoning_requests(ctx, samples)
    verbose = RuleTeacherConfig(style="verbose")  # concise blocks have one template per step
    a = [o.value for o in RuleTeacher(verbose, seed=0).reason_steps_batch(reqs)]
    b = [o.value for o in RuleTeacher(verbose, seed=0).reason_steps_batch(reqs)]
    c = [o.value for o in RuleTeacher(verbose, seed=1).reason_steps_batch(reqs)]
    assert a == b
    assert a != c
    openings = {blocks[0].split()[0] for blocks in a}
    assert len(openings) >= 3  # several templates in use


def test_descriptions_and_narratives(tables):
    items, _, sids, table = tables
    ctx = build_context(items, sids, table, PromptConfig())
    teacher = RuleTeacher()
    descs = [teacher.describe_item(ctx.item(i)) for i in range(12)]
    assert "Gel Pens" in descs[0] and "Acme" in descs[0] and "great" in descs[0]
    assert all(d and not SID_TEXT.search(d) and "think>" not in d for d in descs)
    narrative = teacher.narrate_user([ctx.item(i) for i in (0, 1, 6)])
    assert "Writing" in narrative and not SID_TEXT.search(narrative)
    assert teacher.narrate_user([]) == "This user has no purchases yet."


# -- prompts -----------------------------------------------------------------------------------
def test_prompt_config_validation():
    with pytest.raises(ValueError, match=r"templates.seq_sid: field\(s\) \['sid'\] not allowed"):
        PromptConfig(templates={"seq_sid": "{history} then {sid}"})
    with pytest.raises(ValueError, match="unknown task"):
        PromptConfig(templates={"nope": "{history}"})
    with pytest.raises(ValueError, match="must not end with whitespace"):
        PromptConfig(templates={"seq_sid": "{history}\n"})
    with pytest.raises(ValueError, match="history_item_template"):
        PromptConfig(history_item_template="{title}")


def test_prompt_rendering():
    sids = {1: "<a_1><b_2><c_3>", 2: "<a_4><b_5><c_6>", 3: "<a_0><b_0><c_1>"}
    titles = {1: "Blue Pen, Pack of 2", 2: "A very long title " * 10, 3: "<a_9> Odd"}
    cfg = PromptConfig(history_item_template="{sid} ({title})", max_history=2,
                       max_title_chars=20)
    r = PromptRenderer(cfg, sids, titles)
    assert r.prompt("seq_sid", history=[3, 1, 2]) == (
        "The user bought: <a_1><b_2><c_3> (Blue Pen, Pack of 2), <a_4><b_5><c_6> (A very long "
        "title A)\nNext item:")
    assert r.prompt("titles_to_sid", history=[1, 3]) == (
        "The user bought: Blue Pen, Pack of 2; Odd\nNext item ID:")
    assert r.prompt("sid_to_title", item=1) == "Item ID: <a_1><b_2><c_3>\nTitle:"
    with pytest.raises(ValueError, match="needs item="):
        r.prompt("title_to_sid", history=[1])
    with pytest.raises(KeyError, match="no SID"):
        r.prompt("seq_sid", history=[99])


# -- corpora -----------------------------------------------------------------------------------
def test_alignment_corpus(tables):
    items, samples, sids, table = tables
    cfg = small_cfg()
    ctx = build_context(items, sids, table, cfg.prompts)
    corpus, stats = build_alignment_corpus(ctx, samples, RuleTeacher(seed=0), cfg)
    assert corpus.schema == pl.Schema(CORPUS_SCHEMA)
    assert set(corpus["split"]) == {"train", "valid"}
    assert set(corpus["task"]) == set(cfg.alignment.tasks)
    test_ids = set(samples.filter(pl.col("split") == "test")["sample_id"])
    seq = corpus.filter(~pl.col("task").is_in(["title_to_sid", "sid_to_title",
                                               "sid_to_description"]))
    assert not set(seq["source_id"]) & test_ids
    for split in ("train", "valid"):
        ids = set(seq.filter(pl.col("split") == split)["source_id"])
        assert ids == set(samples.filter(pl.col("split") == split)["sample_id"])
    valid_targets = set(samples.filter(pl.col("split") == "valid")["target"])
    item_valid = corpus.filter(pl.col("task").is_in(["title_to_sid", "sid_to_title"])
                               & (pl.col("split") == "valid"))
    assert set(item_valid["source_id"]) <= valid_targets
    assert stats["skipped"]["title_to_sid"] == {"empty_title": 1}  # item 10 (train pool)
    assert stats["skipped"]["seq_title"] == {"empty_title": 1}  # sample 6 (target 10)
    assert 6 not in corpus.filter(pl.col("task") == "seq_title")["source_id"].to_list()
    row = corpus.filter((pl.col("task") == "seq_sid") & (pl.col("source_id") == 0)).row(0, named=True)
    assert row["response"] == format_sid((0, 0, 2)) and row["prompt"].endswith("Next item:")
    assert "<a_0><b_0><c_2>" not in row["prompt"]
    tricky = corpus.filter((pl.col("task") == "sid_to_title") & (pl.col("source_id") == 11))
    assert tricky["response"].to_list() == ["Tricky Glove Pack"]
    again, _ = build_alignment_corpus(ctx, samples, RuleTeacher(seed=0), cfg)
    assert again.equals(corpus)


def test_caps_are_seeded_subsets(tables):
    items, samples, sids, table = tables
    cfg = small_cfg(max_train_per_task=3, max_valid_per_task=1,
                    caps={"seq_title": {"train": 5}}, tasks=["seq_sid", "seq_title",
                                                            "title_to_sid"])
    ctx = build_context(items, sids, table, cfg.prompts)
    corpus, stats = build_alignment_corpus(ctx, samples, RuleTeacher(), cfg)
    counts = corpus.group_by("task", "split").len().sort("task", "split").rows()
    assert counts == [("seq_sid", "train", 3), ("seq_sid", "valid", 1), ("seq_title", "train", 5),
                      ("seq_title", "valid", 1), ("title_to_sid", "train", 3),
                      ("title_to_sid", "valid", 1)]
    assert stats["selected"]["seq_title"] == {"train": 5, "valid": 1}
    a = corpus.filter(pl.col("task") == "seq_sid")["source_id"].to_list()
    b = corpus.filter(pl.col("task") == "seq_title")["source_id"].to_list()
    assert a == sorted(a) and set(a) != set(b[:3])  # per-task draws differ


def test_reasoning_corpus_layout_and_rejections(tables):
    items, samples, sids, table = tables
    cfg = small_cfg()
    ctx = build_context(items, sids, table, cfg.prompts)

    class PickyTeacher(RuleTeacher):
        def reason_steps_batch(self, requests):
            good = super().reason_steps_batch(requests)
            return [o if r.key % 2 == 0 else Outcome(error="wrong_step_count")
                    for r, o in zip(requests, good)]

    corpus, stats = build_reasoning_corpus(ctx, samples, PickyTeacher(), cfg)
    assert corpus.schema == pl.Schema(CORPUS_SCHEMA)
    assert set(corpus["task"]) == {"reasoning"}
    assert all(i % 2 == 0 for i in corpus["source_id"])
    assert stats["rejected"]["reasoning"] == {"train": {"wrong_step_count": 5},
                                              "valid": {"wrong_step_count": 1}}
    by_id = {r["sample_id"]: r for r in samples.iter_rows(named=True)}
    for row in corpus.iter_rows(named=True):
        sample = by_id[row["source_id"]]
        assert sample["split"] == row["split"] != "test"
        _, codes = parse_steps(row["response"], levels=3)
        assert tuple(codes) == ctx.codes[sample["target"]]
        assert row["prompt"] == ctx.renderer.prompt("reasoning", history=sample["history"])


def test_split_and_catalog_guards(tables):
    items, samples, sids, table = tables
    ctx = build_context(items, sids, table, PromptConfig())
    with pytest.raises(ValueError, match="uses only"):
        split_samples(samples, "test", ctx)
    bad = samples.with_columns(pl.when(pl.col("sample_id") == 3).then(pl.lit(99))
                               .otherwise(pl.col("target")).alias("target"))
    with pytest.raises(ValueError, match=r"sample_id \[3\]"):
        split_samples(bad, "train", ctx)


# -- config, nodes, catalog --------------------------------------------------------------------
def _params() -> dict:
    return resolved_config("parameters")["teacher_corpus"]


def test_config_validation():
    assert from_dict(TeacherCorpusConfig, _params(), "teacher_corpus") == TeacherCorpusConfig()
    for bad, msg in [({"teacher": {"backend": "gpt"}}, "backend 'gpt' unknown"),
                     ({"teacher": {"backend": "openai"}}, "needs openai.model"),
                     ({"teacher": {"openai": {"concurrency": 0}}}, "concurrency=0: must be > 0"),
                     ({"alignment": {"tasks": ["seq_sid", "bogus"]}}, "unknown"),
                     ({"alignment": {"caps": {"seq_sid": {"test": 1}}}}, "keys among"),
                     ({"reasoning": {"max_trian": 1}}, "unknown parameter")]:
        with pytest.raises(ConfigError, match=re.escape(msg)):
            from_dict(TeacherCorpusConfig, bad, "teacher_corpus")


def test_nodes_run_and_catalog_covers_outputs(tables):
    from sapo_pipeline.pipelines.teacher_corpus import create_pipeline, nodes

    items, samples, sids, _ = tables
    params = _params()
    params["alignment"]["max_train_per_task"] = 20
    hier = nodes.build_hierarchy(items, sids, params)
    align, astats = nodes.synthesize_alignment_corpus(items, samples, sids, hier, params)
    reason, rstats = nodes.synthesize_reasoning_corpus(items, samples, sids, hier, params)
    report = nodes.report_teacher_corpus(align, reason, astats, rstats, params)
    json.dumps(report)  # the JSON dataset can write it
    assert report["reasoning"]["tasks"]["reasoning"]["train"]["rows"] == 10
    assert report["teacher_totals"]["requests_made"] == 0
    assert report["alignment"]["tasks"]["sid_sequence"]["valid"]["response_chars"]["max"] == 15

    pipe = create_pipeline()
    assert {n.name for n in pipe.nodes} == {"build_hierarchy", "synthesize_alignment_corpus",
                                            "synthesize_reasoning_corpus",
                                            "report_teacher_corpus"}
    catalog = {}
    for path in sorted((REPO / "conf" / "base").glob("catalog_*.yml")):
        catalog.update(yaml.safe_load(path.read_text()) or {})
    assert pipe.inputs() == {"items", "samples", "sid_table", "params:teacher_corpus"}
    assert pipe.all_outputs() <= set(catalog)
    assert all(catalog[name]["type"].startswith("sapo_pipeline.datasets.") for name in pipe.all_outputs())


def test_sid_sequence_rows_cover_every_train_transition_and_continue_into_decoding(tables):
    """All-position rows: windows of each user's train sequence (targets = every item after its
    context); the prompt of a history is the training text up to the next item."""
    items, _, sids, table = tables
    seqs = {"u1": [0, 1, 2, 3, 4, 5, 6], "u2": [7, 8, 9]}
    rows = []
    for user, seq in seqs.items():
        for pos in range(1, len(seq)):
            rows.append((user, seq[max(0, pos - 10):pos], seq[pos],
                         "valid" if (user, pos) == ("u2", 2) else "train"))
    samples = pl.DataFrame({"sample_id": list(range(len(rows))), "user_id": [r[0] for r in rows],
                            "history": [r[1] for r in rows], "target": [r[2] for r in rows],
                            "timestamp": list(range(len(rows))), "split": [r[3] for r in rows]},
                           schema=SAMPLE_SCHEMA)
    cfg = small_cfg(tasks=["sid_sequence"], sequence_window=4)
    ctx = build_context(items, sids, table, cfg.prompts)
    corpus, stats = build_alignment_corpus(ctx, samples, RuleTeacher(), cfg)
    train = corpus.filter(pl.col("split") == "train")
    r = ctx.renderer
    texts = [p + " " + s for p, s in zip(train["prompt"], train["response"])]
    assert texts == [
        "The user bought: " + ", ".join(r.sid(i) for i in [0, 1, 2, 3]),
        "The user bought: " + ", ".join(r.sid(i) for i in [3, 4, 5, 6]),
        "The user bought: " + ", ".join(r.sid(i) for i in [7, 8])]
    targets = sum((resp.count("<a_") for resp in train["response"]), 0)
    assert targets == (samples["split"] == "train").sum()  # every train transition once
    valid = corpus.filter(pl.col("split") == "valid").row(0, named=True)
    assert valid["prompt"] == r.prompt("sid_sequence", history=[7, 8])
    assert valid["prompt"].endswith(r.sid(8) + ",") and valid["response"] == r.sid(9)
    assert stats["selected"]["sid_sequence"] == {"train": 3, "valid": 1}
    # a template that does not continue into the next item is refused, naming the fix
    bad = small_cfg(tasks=["sid_sequence"])
    bad.prompts.templates["sid_sequence"] = "The user bought: {history}\nNext:"
    ctx = build_context(items, sids, table, bad.prompts)
    with pytest.raises(ValueError, match="templates.sid_sequence: the prompt of a history must"):
        build_alignment_corpus(ctx, samples, RuleTeacher(), bad)


def test_concise_style_names_group_type_and_item_in_short_blocks(tables):
    items, samples, sids, table = tables
    ctx = build_context(items, sids, table, PromptConfig())
    reqs = reasoning_requests(ctx, samples)
    verbose = RuleTeacher(RuleTeacherConfig(style="verbose"), seed=0).reason_steps_batch(reqs)
    concise = RuleTeacher(seed=0).reason_steps_batch(reqs)  # the default
    for v, c in zip(verbose, concise, strict=True):
        assert c.ok and len(c.value) == 3
        assert c.value[0].startswith("Group: ") and c.value[1].startswith("Type: ")
        assert c.value[2].startswith("Item: ")
        assert not SID_TEXT.search(" ".join(c.value))
        assert sum(map(len, c.value)) < sum(map(len, v.value))
    first = reqs[0]  # history [0, 1] -> 2: same level-1 and level-2 prefix as its history
    assert concise[0].value[0].endswith("(as before).")
    with pytest.raises(ValueError, match="style='terse'"):
        RuleTeacherConfig(style="terse")
    assert first.codes == (0, 0, 2)


def test_evidence_style_blocks_depend_on_the_history_and_the_chosen_prefix_only(tables):
    items, samples, sids, table = tables
    ctx = build_context(items, sids, table, PromptConfig())
    # one history [0, 1] (SIDs (0,0,0), (0,0,1)), three targets: 2 = (0,0,2), 4 = (0,1,1), 6 = (1,0,0)
    frame = samples.head(3).with_columns(pl.Series("history", [[0, 1]] * 3),
                                         pl.Series("target", [2, 4, 6]))
    reqs = reasoning_requests(ctx, frame)
    teacher = RuleTeacher(RuleTeacherConfig(style="evidence"), seed=0)
    same2, other2, other1 = (o.value for o in teacher.reason_steps_batch(reqs))
    assert same2[0] == other2[0] == other1[0]  # block 1: the prompt only
    assert same2[0].startswith("Latest group: ") and same2[0].endswith("(2 of 2).")
    assert same2[1] == other2[1] != other1[1]  # block 2: the level-1 prefix chosen before it
    assert same2[1] == f"Here: 2 of 2, latest {teacher._title(ctx.item(1))}."
    assert other1[1] == "Here: 0 of 2."
    assert same2[2] != other2[2] and other2[2] == "Here: 0 of 2."  # block 3: prefix (0,0) vs (0,1)
    assert not SID_TEXT.search(" ".join(same2 + other2 + other1))
    empty = reasoning_requests(ctx, frame.head(1).with_columns(
        pl.Series("history", [[]], dtype=pl.List(pl.Int64))))
    assert teacher.reason_steps_batch(empty)[0].value == ["Latest group: none.", "Here: 0 of 0.",
                                                          "Here: 0 of 0."]
    bare = reqs[0].__class__(key=0, history=reqs[0].history, target=reqs[0].target,
                             codes=reqs[0].codes, hierarchy=reqs[0].hierarchy)
    with pytest.raises(ValueError, match="evidence style needs"):
        teacher.reason_steps_batch([bare])
