"""Reader for UniSRec / RecBole atomic files (e.g. the UniSRec "Scientific" set).

Files in ``dir``: ``<name>.text`` (``item_id:token`` = ASIN, ``text:token_seq`` =
"title. category path. brand. "), ``<name>.item2index`` (``ASIN<TAB>index``),
``<name>.user2index`` (``reviewerID<TAB>index``) and ``<name>.{train,valid,test}.inter``
(``user_id:token<TAB>item_id_list:token_seq<TAB>item_id:token``, indices, leave-one-out split;
train holds one row per prefix, newest target first per user; histories keep only the last
``L`` = 50 items).

Each user's complete ordered sequence is stitched from *all* rows, not read off one row: start
from the user's row with the shortest history (``history + [target]``), then repeatedly append
the target of the row whose history equals the last ``L`` items so far (``L`` = the longest
history in the files). Rows that do not fit the chain are ``inconsistent_sequence`` rejects;
rows naming an index absent from the maps are ``unknown_user`` / ``unknown_item`` rejects.
Reviews: ``user_id`` = reviewerID, ``asin`` = ASIN, ``timestamp``/``rating`` null, ``seq`` =
position, ``file``/``line`` = the row that supplied the item. ``has_timestamps`` is False.

Items: ``item2index`` joined with ``.text`` on the ASIN (``source_item_id`` = the index); the
text is split into title / categories / brand by the heuristic documented in
``_unisrec_text`` (unsure texts keep the whole text in ``description``; counted in notes).
``line`` in reject rows is the physical line (the header is line 1).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import polars as pl

from sapo_pipeline.data.readers._common import (
    concat_rejects,
    excerpt,
    reject_frame,
    require_dir,
    require_file,
)
from sapo_pipeline.data.readers._tsv import TsvFile, read_id_map, read_tsv
from sapo_pipeline.data.readers._unisrec_text import detect_root, parse_text
from sapo_pipeline.data.readers.registry import in_folder, register
from sapo_pipeline.data.schema import ITEM_SCHEMA, REVIEW_SCHEMA, RawSource

logger = logging.getLogger(__name__)

_INTER = "RecBole .inter file 'user_id:token<TAB>item_id_list:token_seq<TAB>item_id:token'"
Row = tuple[tuple[int, ...], int, str, int]  # history, target, file label, line


def _parse_inter(
    tsv: TsvFile, users: dict[int, str], items: dict[int, str], by_user: dict[int, list[Row]]
) -> None:
    for line, (u, hist, target) in tsv.rows:
        try:
            user = int(u)
            history = tuple(int(x) for x in hist.split())
            item = int(target)
        except ValueError:
            tsv.rejects.append(
                (
                    tsv.label,
                    line,
                    None,
                    "wrong_type",
                    f"non-integer index in {excerpt(u + ' | ' + hist + ' | ' + target)}",
                )
            )
            continue
        if user not in users:
            tsv.rejects.append(
                (
                    tsv.label,
                    line,
                    "user_id",
                    "unknown_user",
                    f"user index {user} is not in user2index",
                )
            )
            continue
        bad = next((i for i in (*history, item) if i not in items), None)
        if bad is not None:
            field = "item_id" if bad == item and bad not in history else "item_id_list"
            tsv.rejects.append(
                (tsv.label, line, field, "unknown_item", f"item index {bad} is not in item2index")
            )
            continue
        by_user[user].append((history, item, tsv.label, line))


def stitch(rows: list[Row], max_len: int) -> tuple[list[tuple[int, str, int]], list[Row]]:
    """Chain one user's rows into ``[(item, file, line)]``; return it and the rows left over."""
    if not rows:
        return [], []
    by_key: dict[tuple[int, ...], Row] = {}
    leftover: list[Row] = []
    for r in rows:
        if r[0] in by_key:
            leftover.append(r)
        else:
            by_key[r[0]] = r
    start = min(by_key.values(), key=lambda r: (len(r[0]), r[3]))
    del by_key[start[0]]
    seq = [(i, start[2], start[3]) for i in start[0]] + [(start[1], start[2], start[3])]
    while by_key:
        nxt = by_key.pop(tuple(i for i, _, _ in seq[-max_len:]), None)
        if nxt is None:
            break
        seq.append((nxt[1], nxt[2], nxt[3]))
    return seq, leftover + list(by_key.values())


def _items(text: TsvFile, item_map: dict[int, str]) -> tuple[pl.DataFrame, int]:
    texts: dict[str, str] = {}
    for line, (asin, body) in text.rows:
        asin = asin.strip()
        if not asin:
            text.rejects.append((text.label, line, "item_id", "missing_field", "empty ASIN"))
        elif asin in texts:
            text.rejects.append(
                (
                    text.label,
                    line,
                    "item_id",
                    "duplicate_item",
                    f"ASIN {asin} already has a text; kept the first",
                )
            )
        else:
            texts[asin] = body
    root = detect_root(list(texts.values()))
    index_of = {a: i for i, a in item_map.items()}
    records, unsure = [], 0
    for asin in [*item_map.values(), *(a for a in texts if a not in index_of)]:
        fields, sure = (
            parse_text(texts[asin], root)
            if asin in texts
            else ({"title": None, "categories": [], "brand": None, "description": None}, True)
        )
        unsure += not sure
        records.append({"asin": asin, **fields, "source_item_id": index_of.get(asin)})
    return pl.DataFrame(records, schema=ITEM_SCHEMA), unsure


@register("unisrec", in_folder("dir"))
def read_unisrec(dir: str | Path, name: str = "Scientific") -> RawSource:
    """Read a UniSRec/RecBole dataset directory into a RawSource (order only, no timestamps)."""
    root = require_dir(dir, f"UniSRec/RecBole dataset directory for {name!r}")

    def need(suffix: str) -> Path:
        return require_file(root / f"{name}.{suffix}", f"UniSRec {suffix} file")

    item_map, item_tsv = read_id_map(need("item2index"), f"{name}.item2index", "item2index")
    user_map, user_tsv = read_id_map(need("user2index"), f"{name}.user2index", "user2index")
    text = read_tsv(
        need("text"),
        f"{name}.text",
        2,
        header=True,
        expected="UniSRec .text file 'item_id:token<TAB>text:token_seq'",
    )
    by_user: dict[int, list[Row]] = defaultdict(list)
    inters = []
    for split in ("train", "valid", "test"):
        tsv = read_tsv(
            need(f"{split}.inter"), f"{name}.{split}.inter", 3, header=True, expected=_INTER
        )
        _parse_inter(tsv, user_map, item_map, by_user)
        inters.append(tsv)
    max_len = max((len(r[0]) for rows in by_user.values() for r in rows), default=0)
    out: dict[str, list] = {c: [] for c in REVIEW_SCHEMA}
    stitch_rejects = []
    for user in sorted(by_user):
        seq, leftover = stitch(by_user[user], max_len)
        for pos, (item, label, line) in enumerate(seq):
            out["user_id"].append(user_map[user])
            out["asin"].append(item_map[item])
            out["timestamp"].append(None)
            out["rating"].append(None)
            out["seq"].append(pos)
            out["file"].append(label)
            out["line"].append(line)
        stitch_rejects += [
            (
                label,
                line,
                None,
                "inconsistent_sequence",
                f"row of user {user} does not continue the stitched sequence",
            )
            for _, _, label, line in leftover
        ]
    items, unsure = _items(text, item_map)
    notes = [f"sequences stitched from train+valid+test rows (history cap {max_len})"]
    if unsure:
        notes.append(
            f"{name}.text: {unsure} texts not split with confidence; their whole text "
            f"is kept in description"
        )
    files = [item_tsv, user_tsv, text, *inters]
    return RawSource(
        reviews=pl.DataFrame(out, schema=REVIEW_SCHEMA),
        items=items,
        rejects=concat_rejects(
            [reject_frame(f.rejects) for f in files] + [reject_frame(stitch_rejects)]
        ),
        lines_read={f.label: f.n_rows for f in files},
        has_timestamps=False,
        notes=notes,
    )
