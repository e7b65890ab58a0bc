"""Classic baselines: user sequences, popularity, SASRec, their predictions and config."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pytest

from sapo_pipeline.baselines import popularity
from sapo_pipeline.baselines.config import PopularityConfig, SASRecConfig
from sapo_pipeline.baselines.registry import KINDS, BaselineSection, baseline_config_from_dict
from sapo_pipeline.baselines.sasrec import (
    SASRec,
    _loss,
    _pad,
    batches,
    ndcg_at,
    rank_items,
    train_sasrec,
)
from sapo_pipeline.config_utils import ConfigError, from_dict
from sapo_pipeline.data.sequences import user_sequences, windows
from sapo_pipeline.evaluation.predictions import PREDICTIONS_SCHEMA, predictions_from_items


def _samples(sequences: dict[str, list[int]], max_history: int = 10,
             split_of=lambda user, pos, n: "train") -> pl.DataFrame:
    """Sliding-window samples of each user's sequence, as ingest makes them."""
    rows = []
    for user, seq in sequences.items():
        for pos in range(1, len(seq)):
            rows.append({"user_id": user, "history": seq[max(0, pos - max_history):pos],
                         "target": seq[pos], "timestamp": pos, "split": split_of(user, pos,
                                                                                 len(seq))})
    df = pl.DataFrame(rows, schema={"user_id": pl.Utf8, "history": pl.List(pl.Int64),
                                    "target": pl.Int64, "timestamp": pl.Int64, "split": pl.Utf8})
    return df.with_row_index("sample_id").with_columns(pl.col("sample_id").cast(pl.Int64))


def test_user_sequences_rebuild_each_users_train_sequence():
    seqs = {"u1": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], "u2": [5, 5, 6]}
    s = _samples(seqs, max_history=3)
    out = user_sequences(s)
    assert sorted(zip(out.users, out.items)) == sorted(seqs.items())
    assert out.transitions == s.height
    # a sample that does not continue the sequence starts a new segment (nothing invented)
    broken = pl.concat([s, pl.DataFrame({"sample_id": [99], "user_id": ["u2"], "history": [[8, 9]],
                                         "target": [1], "timestamp": [9], "split": ["train"]},
                                        schema=s.schema)])
    out = user_sequences(broken)
    assert [8, 9, 1] in out.items and [5, 5, 6] in out.items
    assert out.transitions == broken.height + 1  # the new segment's first pair is context
    with pytest.raises(ValueError, match="no rows in split 'test'"):
        user_sequences(s, "test")


def test_windows_cover_every_transition_exactly_once():
    seq = list(range(23))
    for length, stride in ((5, None), (5, 2), (11, 10), (2, 1)):
        targets = []
        for items, first in windows([seq], length, stride):
            assert len(items) <= length and first >= 1
            targets += items[first:]
        assert targets == seq[1:], (length, stride)
    assert windows([[4], []], 3) == []
    with pytest.raises(ValueError, match="stride"):
        windows([seq], 4, 4)


def test_popularity_ranks_by_train_counts_ties_by_item_id():
    s = _samples({"a": [3, 1, 3, 2], "b": [2, 3, 4]}, split_of=lambda u, p, n: "train")
    counts = popularity.item_counts(s, 6, PopularityConfig())
    assert counts.tolist() == [0, 1, 2, 3, 1, 0]
    top, scores = popularity.popularity_ranking(counts, 4)
    assert top.tolist() == [3, 2, 1, 4] and scores.tolist() == [3, 2, 1, 1]
    targets = popularity.item_counts(s, 6, PopularityConfig(count="targets"))
    assert targets.tolist() == [0, 1, 1, 2, 1, 0]
    state, report = KINDS["popularity"].fit(s, 6, PopularityConfig())
    items, _ = KINDS["popularity"].rank(state, [[1], [2, 3]], PopularityConfig(), 3)
    assert items.tolist() == [[3, 2, 1], [3, 2, 1]] and report["top10"][:2] == [3, 2]


def test_sasrec_learns_a_deterministic_rule_to_near_perfect_recall_at_1(caplog):
    n, rng = 30, np.random.default_rng(0)
    succ = rng.permutation(n)  # next item = succ[last item]
    seqs = {}
    for u in range(240):
        seq = [int(rng.integers(n))]
        for _ in range(7):
            seq.append(int(succ[seq[-1]]))
        seqs[f"u{u}"] = seq
    s = _samples(seqs, split_of=lambda u, p, n_: "valid" if p == n_ - 1 else "train")
    # valid predicts from one position further than any train sequence: positions counted back
    # from the last item make that position a trained one
    cfg = SASRecConfig(hidden=32, max_len=8, max_epochs=40, patience=40, lr=5e-3, dropout=0.0,
                       batch_size=32, positions="from_end", progress_bar=False, seed=1)
    with caplog.at_level(logging.INFO, logger="sapo_pipeline.baselines.sasrec"):
        result = train_sasrec(s, n, cfg)
    # a log file sees the bar's progress every 10 epochs (the bar is off without a tty)
    epochs_logged = [r.getMessage().split()[2] for r in caplog.records
                     if r.getMessage().startswith("sasrec epoch")]
    assert epochs_logged == ["10/40", "20/40", "30/40", "40/40"], epochs_logged
    valid = s.filter(pl.col("split") == "valid")
    top, scores = rank_items(result.model, [list(h) for h in valid["history"]], 5)
    recall1 = float((top[:, 0] == valid["target"].to_numpy()).mean())
    assert recall1 >= 0.95, recall1
    assert (np.diff(scores, axis=1) <= 0).all()
    assert result.summary["train_transitions"] == (s["split"] == "train").sum()
    assert result.summary["best_valid_ndcg@10"] == max(r["valid_ndcg@10"] for r in result.log)
    # the BCE variant (the original paper's loss) trains too
    bce = train_sasrec(s, n, SASRecConfig(hidden=32, max_len=8, max_epochs=3, loss="bce",
                                          progress_bar=False))
    assert bce.summary["loss"] == "bce" and len(bce.log) >= 1


def test_length_grouped_batches_cover_every_window_once_and_cutting_the_padding_changes_nothing():
    import torch

    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 52, size=1000)
    gen = torch.Generator().manual_seed(0)
    grouped = batches(lengths, 32, 10, gen)
    plain = batches(lengths, 32, None, gen)
    for epoch in (grouped, plain):
        assert sorted(torch.cat(epoch).tolist()) == list(range(1000))
        assert all(len(b) <= 32 for b in epoch)
    spread = [float(np.ptp(lengths[b.numpy()])) for b in grouped]
    assert np.mean(spread) < 0.25 * np.mean([np.ptp(lengths[b.numpy()]) for b in plain])
    assert grouped[0].tolist() != sorted(grouped[0].tolist())  # the batches are shuffled too
    # right-padded windows: the columns after the longest one do not change the loss
    cfg = SASRecConfig(hidden=16, max_len=12, dropout=0.0)
    model = SASRec(30, cfg).eval()
    rows = [list(rng.integers(0, 30, size=n)) for n in (3, 7, 5)]
    full = torch.from_numpy(_pad(rows, cfg.max_len + 1))
    cut = full[:, :7]
    assert torch.allclose(_loss(model, full, cfg, gen), _loss(model, cut, cfg, gen), atol=1e-6)


def test_sasrec_state_round_trips_through_the_registry():
    s = _samples({f"u{u}": [u % 7, (u + 1) % 7, (u + 2) % 7, (u + 3) % 7] for u in range(20)},
                 split_of=lambda u, p, n: "valid" if p == n - 1 else "train")
    cfg = SASRecConfig(hidden=8, max_epochs=2, progress_bar=False)
    state, report = KINDS["sasrec"].fit(s, 7, cfg)
    assert all(isinstance(v, np.ndarray) for v in state.values())
    hist = [[1, 2], [3]]
    items, scores = KINDS["sasrec"].rank(state, hist, cfg, 4)
    assert items.shape == (2, 4) and report["epochs_run"] == 2
    assert ndcg_at(np.array([[1, 2], [3, 4]]), np.array([2, 9]), 2) == pytest.approx(
        0.5 / np.log2(3))


def test_predictions_from_items_carry_each_items_sid():
    table = pl.DataFrame({"item_id": [0, 1, 2], "codes": [[0, 1], [0, 2], [1, 0]]})
    preds = predictions_from_items([10, 11], np.array([[2, 0], [1, 2]]),
                                   np.array([[0.9, 0.1], [0.5, 0.4]]), table)
    assert preds.schema == pl.Schema(PREDICTIONS_SCHEMA)
    assert preds["codes"].to_list() == [[1, 0], [0, 1], [0, 2], [1, 0]]
    assert preds["rank"].to_list() == [0, 1, 0, 1]
    with pytest.raises(ValueError, match=r"items \[7\] have no SID"):
        predictions_from_items([1], np.array([[7]]), np.array([[1.0]]), table)


def test_baseline_config_names_the_bad_field():
    kind, cfg = baseline_config_from_dict({"kind": "sasrec", "hidden": 32})
    assert kind == "sasrec" and cfg.hidden == 32
    with pytest.raises(ConfigError, match="kind='nope'"):
        baseline_config_from_dict({"kind": "nope"})
    with pytest.raises(ConfigError, match=r"baseline: unknown parameter\(s\) \['hiden'\]"):
        from_dict(BaselineSection, {"baseline": {"kind": "sasrec", "hiden": 3}}, "sasrec")
    with pytest.raises(ConfigError, match="dropout"):
        from_dict(BaselineSection, {"baseline": {"kind": "sasrec", "dropout": 1.5}}, "sasrec")
    with pytest.raises(ConfigError, match="divisible"):
        baseline_config_from_dict({"kind": "sasrec", "hidden": 10, "heads": 3})


def test_mask_history_keeps_every_history_item_out_of_the_ranking():
    torch = pytest.importorskip("torch")
    from sapo_pipeline.baselines.sasrec import SASRec

    torch.manual_seed(0)
    model = SASRec(12, SASRecConfig(hidden=16, max_len=6, dropout=0.0, progress_bar=False))
    histories = [[0, 1, 2, 3], [5], [7, 7, 8, 9, 10, 11, 1]]  # longer than max_len, a repeat
    kept, kept_scores = rank_items(model, histories, 12)
    masked, masked_scores = rank_items(model, histories, 12, mask_history=True)
    for hist, row, scores in zip(histories, masked, masked_scores):
        n_free = 12 - len(set(hist))
        assert not set(row[:n_free].tolist()) & set(hist)  # history items rank after the rest
        assert np.isneginf(scores[n_free:]).all() and np.isfinite(scores[:n_free]).all()
    # the other items keep their order and scores
    for hist, k_row, k_s, m_row, m_s in zip(histories, kept, kept_scores, masked, masked_scores):
        free = [(i, s) for i, s in zip(k_row.tolist(), k_s.tolist()) if i not in hist]
        assert [i for i, _ in free] == m_row[:len(free)].tolist()
        assert np.allclose([s for _, s in free], m_s[:len(free)])
