"""Reader for the LC-Rec / LETTER release files (e.g. Amazon 2018 Video_Games "Games").

Files in ``dir``: ``<name>.inter.json`` (``{user_index: [item_index, ...]}``, complete
chronological sequences, no timestamps), ``<name>.item2id`` (``ASIN<TAB>index``) and
``<name>.user2id`` (``reviewerID<TAB>index``). The release has no item text; titles come from
``titles_tsv``, the derived LLMRank <-> LC-Rec map (``llmrank_item_id, lcrec_item_id, asin,
match, title``). Its ``ambiguous_pair`` rows list two LC-Rec ids ("a|b") for two LLMRank items
whose order inside the pair is unknown: the k-th row of a pair gets the k-th id (so a title may
be swapped with its partner's), and the count is reported in ``notes``. A ``unique`` row whose
ASIN disagrees with ``item2id`` is an ``inconsistent_item`` reject.

Reviews: ``user_id`` = reviewerID, ``asin`` = ASIN, ``timestamp``/``rating`` null, ``seq`` =
position in the sequence. ``inter.json`` is a single JSON object, so its ``line`` (in reviews
and rejects) and its ``lines_read`` count are *record* positions (1-based user order in the
file). Items: every ``item2id`` entry, ``source_item_id`` = the LC-Rec index, title from the
map (null when absent). ``has_timestamps`` is False.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import polars as pl

from sapo_pipeline.config_utils import InputError
from sapo_pipeline.data.readers._common import (
    concat_rejects,
    excerpt,
    read_json_object,
    reject_frame,
    require_dir,
    require_file,
)
from sapo_pipeline.data.readers._tsv import TsvFile, read_id_map, read_tsv
from sapo_pipeline.data.readers.registry import in_folder, register
from sapo_pipeline.data.schema import ITEM_SCHEMA, REVIEW_SCHEMA, RawSource

logger = logging.getLogger(__name__)

TITLE_COLUMNS = ["llmrank_item_id", "lcrec_item_id", "asin", "match", "title"]


def _read_titles(path: Path, item_map: dict[int, str]) -> tuple[dict[int, str], TsvFile, int]:
    """LC-Rec id -> title from the derived map; returns (titles, file, ambiguous row count)."""
    tsv = read_tsv(
        path,
        path.name,
        len(TITLE_COLUMNS),
        header=True,
        expected=f"a TSV with header {TITLE_COLUMNS}",
    )
    if tsv.header != TITLE_COLUMNS:
        raise InputError(f"{path}: header {tsv.header}; expected {TITLE_COLUMNS}")
    titles: dict[int, str] = {}
    pair_seen: Counter[str] = Counter()
    n_ambiguous = 0
    for line, (_, lc_ids, asins, match, title) in tsv.rows:
        try:
            ids = [int(x) for x in lc_ids.split("|")]
        except ValueError:
            tsv.rejects.append(
                (
                    tsv.label,
                    line,
                    "lcrec_item_id",
                    "wrong_type",
                    f"{excerpt(lc_ids)} is not an id or 'id|id'",
                )
            )
            continue
        asin_list = asins.split("|")
        if match == "ambiguous_pair" and len(ids) == 2 == len(asin_list):
            k = pair_seen[lc_ids]
            pair_seen[lc_ids] += 1
            if k > 1:
                tsv.rejects.append(
                    (
                        tsv.label,
                        line,
                        "lcrec_item_id",
                        "duplicate_item",
                        f"pair {lc_ids} listed more than twice",
                    )
                )
                continue
            n_ambiguous += 1
            item, asin = ids[k], asin_list[k]
        elif match == "unique" and len(ids) == 1 == len(asin_list):
            item, asin = ids[0], asin_list[0]
        else:
            tsv.rejects.append(
                (
                    tsv.label,
                    line,
                    "match",
                    "malformed_row",
                    f"match {excerpt(match)} with ids {excerpt(lc_ids)}",
                )
            )
            continue
        if item not in item_map:
            tsv.rejects.append(
                (
                    tsv.label,
                    line,
                    "lcrec_item_id",
                    "unknown_item",
                    f"LC-Rec item {item} is not in item2id",
                )
            )
        elif item_map[item] != asin:
            tsv.rejects.append(
                (
                    tsv.label,
                    line,
                    "asin",
                    "inconsistent_item",
                    f"ASIN {asin} but item2id says {item_map[item]} for item {item}",
                )
            )
        elif item in titles:
            tsv.rejects.append(
                (
                    tsv.label,
                    line,
                    "lcrec_item_id",
                    "duplicate_item",
                    f"LC-Rec item {item} already has a title; kept the first",
                )
            )
        else:
            titles[item] = title.strip() or None  # type: ignore[assignment]
    return titles, tsv, n_ambiguous


def _read_inter(
    path: Path, label: str, users: dict[int, str], items: dict[int, str]
) -> tuple[pl.DataFrame, list[tuple], int]:
    data = read_json_object(path, "LC-Rec inter.json", "{user_index: [item_index, ...]}")
    out: dict[str, list] = {c: [] for c in REVIEW_SCHEMA}
    rejects: list[tuple] = []
    for pos, (key, seq) in enumerate(data.items(), start=1):
        reject = None
        try:
            user = users.get(int(key))
        except ValueError:
            user, reject = (
                None,
                ("user_id", "wrong_type", (f"user key {excerpt(key)} is not an integer")),
            )
        if reject is None and user is None:
            reject = ("user_id", "unknown_user", f"user {key} is not in user2id")
        elif reject is None and (
            not isinstance(seq, list)
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in seq)
        ):
            reject = (
                "items",
                "wrong_type",
                (f"user {key}: expected a list of integers, got {excerpt(seq)}"),
            )
        elif reject is None and not seq:
            reject = ("items", "empty_sequence", f"user {key} has no items")
        elif reject is None and (bad := next((i for i in seq if i not in items), None)) is not None:
            reject = ("items", "unknown_item", f"user {key}: item {bad} is not in item2id")
        if reject is not None:
            rejects.append((label, pos, *reject))
            continue
        n = len(seq)
        out["user_id"] += [user] * n
        out["asin"] += [items[i] for i in seq]
        out["timestamp"] += [None] * n
        out["rating"] += [None] * n
        out["seq"] += list(range(n))
        out["file"] += [label] * n
        out["line"] += [pos] * n
    return pl.DataFrame(out, schema=REVIEW_SCHEMA), rejects, len(data)


@register("lcrec", in_folder("dir"))
def read_lcrec(
    dir: str | Path, name: str = "Games", titles_tsv: str | Path | None = None
) -> RawSource:
    """Read an LC-Rec dataset directory (+ optional derived title map) into a RawSource."""
    root = require_dir(dir, f"LC-Rec dataset directory for {name!r}")
    item_map, item_tsv = read_id_map(
        require_file(root / f"{name}.item2id", "LC-Rec item2id file"), f"{name}.item2id", "item2id"
    )
    user_map, user_tsv = read_id_map(
        require_file(root / f"{name}.user2id", "LC-Rec user2id file"), f"{name}.user2id", "user2id"
    )
    inter_path = require_file(root / f"{name}.inter.json", "LC-Rec inter.json file")
    reviews, inter_rejects, n_users = _read_inter(inter_path, inter_path.name, user_map, item_map)
    files = [item_tsv, user_tsv]
    notes: list[str] = []
    titles: dict[int, str] = {}
    if titles_tsv is not None:
        titles, title_tsv, n_amb = _read_titles(
            require_file(titles_tsv, "LLMRank-to-LC-Rec title map TSV"), item_map
        )
        files.append(title_tsv)
        if n_amb:
            notes.append(
                f"{title_tsv.label}: {n_amb} ambiguous_pair rows ({n_amb // 2} pairs); "
                f"titles assigned in listed order, possibly swapped within a pair"
            )
        if missing := len(item_map) - len(titles):
            notes.append(f"{missing} of {len(item_map)} items have no title in {title_tsv.label}")
    else:
        notes.append("no titles_tsv given: every item title is null")
    items = pl.DataFrame(
        [
            {
                "asin": asin,
                "title": titles.get(i),
                "brand": None,
                "categories": [],
                "description": None,
                "source_item_id": i,
            }
            for i, asin in sorted(item_map.items())
        ],
        schema=ITEM_SCHEMA,
    )
    lines_read = {f.label: f.n_rows for f in files}
    lines_read[inter_path.name] = n_users
    return RawSource(
        reviews=reviews,
        items=items,
        rejects=concat_rejects(
            [reject_frame(f.rejects) for f in files] + [reject_frame(inter_rejects)]
        ),
        lines_read=lines_read,
        has_timestamps=False,
        notes=notes,
    )
