"""SID token embeddings from the SID code vectors (``align.sid_init: codebook``)."""

from __future__ import annotations

import numpy as np
import pytest
import sft_setup
import torch

from sapo_pipeline.config_utils import from_dict
from sapo_pipeline.model.sft_config import AlignConfig
from sapo_pipeline.model.sft_stages import train_align
from sapo_pipeline.model.sid_embeddings import init_sid_embeddings, projection, sid_rows
from sapo_pipeline.sid.catalog import sid_token
from sapo_pipeline.sid.vectors import code_vectors, residual_code_means
from sapo_pipeline.stages import read_inputs, write_run


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    return sft_setup.tiny_setup()


def _cos(m: np.ndarray) -> np.ndarray:
    u = m / np.linalg.norm(m, axis=1, keepdims=True)
    return u @ u.T


def test_residual_code_means_recover_the_codes_of_a_residual_catalog():
    rng = np.random.default_rng(0)
    true = rng.standard_normal((2, 4, 6)) * np.array([3.0, 1.0])[:, None, None]
    codes = np.array([(a, b) for a in range(3) for b in range(4) for _ in range(5)])  # code 3 of
    x = 10.0 + true[0, codes[:, 0]] + true[1, codes[:, 1]]                        # level 0 unused
    books = residual_code_means(x, codes, codebook_size=4)
    assert books.shape == (2, 4, 6) and books.dtype == np.float32
    assert np.all(books[0, 3] == 0)  # no item carries it
    # every level's codes are recovered up to that level's mean (the centring)
    for level, used in ((0, [0, 1, 2]), (1, [0, 1, 2, 3])):
        want = true[level, used] - true[level, used].mean(axis=0)
        got = books[level, used] - books[level, used].mean(axis=0)
        np.testing.assert_allclose(got, want, atol=1e-5)
    # the residual after the last level is zero: these codes explain the embeddings exactly
    recon = x.mean(axis=0) + books[0, codes[:, 0]] + books[1, codes[:, 1]]
    np.testing.assert_allclose(recon, x, atol=1e-4)


def test_residual_code_means_refuse_mismatched_input():
    with pytest.raises(ValueError, match="same n"):
        residual_code_means(np.zeros((3, 2)), np.zeros((4, 1), dtype=int), 2)
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        residual_code_means(np.zeros((2, 2)), np.array([[0], [2]]), 2)


def test_code_vectors_name_what_is_missing():
    assert code_vectors({"codebooks": np.zeros((3, 4, 2))}).shape == (3, 4, 2)
    with pytest.raises(ValueError, match="no 'codebooks'.*rebuild the SID catalog"):
        code_vectors({"published_codes": np.zeros((3, 3))})


@pytest.mark.parametrize("d, h", [(8, 32), (32, 8)])
def test_projection_keeps_the_geometry_of_a_narrow_code_space(d, h):
    p = projection(d, h, seed=3)
    assert p.shape == (d, h)
    if d <= h:  # an isometry
        np.testing.assert_allclose(p @ p.T, np.eye(d), atol=1e-10)
    else:       # orthonormal columns
        np.testing.assert_allclose(p.T @ p, np.eye(h), atol=1e-10)
    np.testing.assert_array_equal(p, projection(d, h, seed=3))
    assert not np.allclose(p, projection(d, h, seed=4))


def test_sid_rows_keep_each_levels_angles_and_take_the_target_norm():
    rng = np.random.default_rng(1)
    books = rng.standard_normal((3, 5, 8)) + 4.0  # an offset the centring removes
    rows = sid_rows(books, hidden=32, target_norm=0.7, seed=0)
    assert rows.shape == (3, 5, 32)
    for level in range(3):
        centred = books[level] - books[level].mean(axis=0)
        np.testing.assert_allclose(_cos(rows[level]), _cos(centred), atol=1e-10)
        assert np.linalg.norm(rows[level], axis=1).mean() == pytest.approx(0.7)


def test_init_writes_the_sid_rows_and_leaves_the_rest(setup):
    model, tok = setup.new_model(), setup.tokenizer
    before = model.get_input_embeddings().weight.detach().clone()
    books = np.random.default_rng(2).standard_normal((2, 4, 8)).astype(np.float32)  # 2 of 3 levels
    report = init_sid_embeddings(model, tok, books, seed=0)
    after = model.get_input_embeddings().weight.detach()
    vocab = tok.get_vocab()
    written = [vocab[sid_token(level, c)] for level in range(2) for c in range(4)]
    rest = [i for i in range(len(before)) if i not in written]
    assert torch.equal(after[rest], before[rest])  # the third level's tokens and all text tokens
    want = sid_rows(books, after.shape[1], report["target_norm"], seed=0)
    got = after[written].numpy().reshape(2, 4, -1)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert report["target_norm"] == pytest.approx(float(before[rest].norm(dim=1).mean()), rel=1e-5)
    assert report["rows"] == 8 and report["levels"] == 2 and report["levels_in_vocab"] == 3
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied


def _align_cfg(tmp_path, **extra):
    return from_dict(AlignConfig, {
        "tokenizer": {"vocab_size": 400}, "backbone": {"preset": "tiny"}, **extra,
        "train": {"max_steps": 2, "batch_size": 8, "max_length": 64, "eval_every": 2,
                  "work_dir": str(tmp_path / "w"), "progress_bar": False}}, "align")


def test_stage1_starts_from_the_codebooks_by_parameter(setup, tmp_path):
    books = np.random.default_rng(3).standard_normal((3, 4, 8)).astype(np.float32)
    cfg = _align_cfg(tmp_path, sid_init="codebook")
    at_begin = {}

    def begin(info):
        if info.event == "begin":
            at_begin["emb"] = info.model.get_input_embeddings().weight.detach().clone()

    ckpt, _ = train_align(setup.alignment, setup.tokenizer, setup.table, cfg,
                          callbacks=[begin], sid_quantizer={"codebooks": books})
    record = ckpt.extra["sid_init"]
    assert record["method"] == "codebook" and record["rows"] == 12 and record["code_dim"] == 8
    vocab = setup.tokenizer.get_vocab()
    ids = [vocab[sid_token(level, c)] for level in range(3) for c in range(4)]
    want = sid_rows(books, at_begin["emb"].shape[1], record["target_norm"], seed=cfg.train.seed)
    np.testing.assert_allclose(at_begin["emb"][ids].numpy().reshape(3, 4, -1), want, atol=1e-6)
    with pytest.raises(ValueError, match="needs the sid_quantizer"):
        train_align(setup.alignment, setup.tokenizer, setup.table,
                    _align_cfg(tmp_path / "b", sid_init="codebook"))
    plain, _ = train_align(setup.alignment, setup.tokenizer, setup.table,
                           _align_cfg(tmp_path / "c"))
    assert plain.extra["sid_init"] == {"method": "random"}
    with pytest.raises(ValueError, match="sid_init='kmeans'"):
        _align_cfg(tmp_path, sid_init="kmeans")


def test_a_launched_stage_gets_the_quantizer_state(tmp_path, setup):
    state = {"codebooks": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
             "mean": np.ones(4, dtype=np.float32)}
    import json

    run = write_run(tmp_path / "launch", "align", {"align": {}},
                    {"alignment_corpus": setup.alignment, "align_tokenizer": setup.tokenizer,
                     "sid_table": setup.table, "sid_quantizer": state})
    spec = json.loads(run.read_text())
    assert spec["inputs"]["sid_quantizer"]["kind"] == "tensors"
    back = read_inputs(spec)["sid_quantizer"]
    assert back.keys() == state.keys()
    np.testing.assert_array_equal(back["codebooks"], state["codebooks"])
