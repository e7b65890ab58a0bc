"""Self-tests of the decoding fixtures helpers (tests/decoding_fixtures.py)."""

from __future__ import annotations

import torch
from decoding_fixtures import CODEBOOK, LEVELS, TableModel, setup


def test_setup_tokenizer_has_single_sid_tokens() -> None:
    s = setup()
    for level in range(LEVELS):
        for code in range(CODEBOOK):
            tid = s.vocab.token_id(level, code)
            assert s.tokenizer.convert_ids_to_tokens(tid) == f"<{'abc'[level]}_{code}>"
            assert s.vocab.code_of(tid) == (level, code)
    assert len(s.trie) == 12


def test_table_model_cache_follows_selected_rows() -> None:
    model = TableModel(5, lambda hist: torch.tensor([float(len(hist)), 0, 0, 0, float(hist[-1])]))
    out = model(input_ids=torch.tensor([[1, 2], [3, 4]]), attention_mask=torch.ones(2, 2))
    cache = out.cache
    cache.batch_select_indices(torch.tensor([1, 1, 0]))
    out = model(input_ids=torch.tensor([[0], [2], [1]]),
                attention_mask=torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 1]]),
                cache=cache)
    assert cache.rows() == [[3, 4], [3, 4, 2], [1, 2, 1]]
    assert out.logits[:, 0, 0].tolist() == [2.0, 3.0, 3.0]
