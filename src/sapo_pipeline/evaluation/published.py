"""Published reference numbers (METHOD.md §5), for context only.

They come from other code, other backbones (Qwen2.5 / Qwen3-1.7B on GPU) and the Amazon 2018
2016-10..2018-11 window; the report prints them in a separate, labelled table and never mixes
them into the rows of our own runs.
"""

from __future__ import annotations

from typing import Any

_WINDOW = "test split, Amazon 2018, 2016-10..2018-11 window (METHOD.md §5)"
SOURCES = {
    "industrial": f"MiniOneRec main table (Qwen2.5 backbones, GPU); {_WINDOW}",
    "office": f"MiniOneRec main table (Qwen2.5 backbones, GPU) and SIDReasoner (Qwen3-1.7B); {_WINDOW}",
}
COLUMNS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")

_MINIONEREC: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "industrial": {
        "SASRec": (0.0909, 0.0748, 0.1088, 0.0806),
        "TIGER": (0.1010, 0.0807, 0.1321, 0.0908),
        "D3": (0.1213, 0.0989, 0.1500, 0.1082),
        "S-DPO": (0.1238, 0.0991, 0.1524, 0.1082),
        "MiniOneRec": (0.1321, 0.1084, 0.1586, 0.1167),
    },
    "office": {
        "SASRec": (0.0949, 0.0805, 0.1120, 0.0858),
        "TIGER": (0.1163, 0.0960, 0.1408, 0.1002),
        "D3": (0.1406, 0.1139, 0.1634, 0.1213),
        "S-DPO": (0.1356, 0.1110, 0.1587, 0.1255),
        "MiniOneRec": (0.1420, 0.1172, 0.1634, 0.1242),
        "SIDReasoner": (0.1373, 0.1119, 0.1648, 0.1208),
    },
}

#: Lower-cased data set names that select a published table.
ALIASES: dict[str, str] = {
    "office": "office",
    "office_products": "office",
    "amazon_office": "office",
    "industrial": "industrial",
    "industrial_and_scientific": "industrial",
    "amazon_industrial": "industrial",
}


def published_key(dataset: str, choice: str = "auto") -> str | None:
    """Which published table applies: ``choice`` if explicit, else looked up from ``dataset``."""
    if choice == "none":
        return None
    if choice != "auto":
        if choice not in _MINIONEREC:
            raise ValueError(f"no published numbers for {choice!r}; have {sorted(_MINIONEREC)}")
        return choice
    return ALIASES.get(str(dataset).strip().lower().replace(" ", "_").replace("-", "_"))


def published_table(key: str) -> dict[str, Any]:
    """``{"dataset", "source", "columns", "rows": [{"method", metric: value, ...}]}``."""
    if key not in _MINIONEREC:
        raise ValueError(f"no published numbers for {key!r}; have {sorted(_MINIONEREC)}")
    rows = [{"method": m, **dict(zip(COLUMNS, vals))} for m, vals in _MINIONEREC[key].items()]
    return {"dataset": key, "source": SOURCES[key], "columns": list(COLUMNS), "rows": rows}
