"""Item catalogs of the MiniOneRec / D3 releases: ``index/<Cat>.item.json`` or ``info/*.txt``.

``item.json`` is one JSON object ``{item_id: {title, description, brand, categories}}``;
``description`` is a stringified Python list (parsed leniently, see
:func:`sapo_pipeline.data.readers._cells.parse_text_list`) joined with " ". Its "line" in
reject rows and its ``lines_read`` count are record positions (1-based), since the file is a
single object. The info file is tab-separated, one item per line, no header:
``SID<TAB>title<TAB>item_id`` (MiniOneRec) or ``title<TAB>item_id`` (D3/ReRe).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sapo_pipeline.data.readers._cells import parse_text_list
from sapo_pipeline.data.readers._common import excerpt, read_json_object

_SID = re.compile(r"^(<[a-z]_\d+>)+$")


@dataclass
class Catalog:
    """Items keyed by source item id, with rejects and counts."""

    label: str
    items: dict[int, dict] = field(
        default_factory=dict
    )  # id -> {title, brand, categories, description}
    rejects: list[tuple] = field(default_factory=list)
    n_records: int = 0
    notes: list[str] = field(default_factory=list)


def _opt_str(value: object) -> tuple[str | None, bool]:
    if value is None or isinstance(value, str):
        text = value.strip() if isinstance(value, str) else None
        return (text or None), True
    return None, False


def _categories(value: object) -> list[str] | None:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return (
            [v.strip() for v in value if isinstance(v, str) and v.strip()]
            if all(isinstance(v, str) for v in value)
            else None
        )
    if isinstance(value, str):
        return parse_text_list(value)[0] if value.strip().startswith("[") else [value.strip()]
    return None


def read_item_json(path: Path, label: str) -> Catalog:
    """Read ``<Cat>.item.json``; a record with a non-integer key or bad field types is a reject."""
    data = read_json_object(path, "a MiniOneRec item.json", "{item_id: {title, description, brand, categories}}")
    cat = Catalog(label=label, n_records=len(data))
    inexact = 0
    for pos, (key, rec) in enumerate(data.items(), start=1):
        try:
            item_id = int(key)
        except ValueError:
            cat.rejects.append(
                (label, pos, "item_id", "wrong_type", f"item id {excerpt(key)} is not an integer")
            )
            continue
        if item_id in cat.items:
            cat.rejects.append(
                (
                    label,
                    pos,
                    "item_id",
                    "duplicate_item",
                    (
                        f"item id {item_id} already read at record "
                        f"{cat.items[item_id]['line']}; kept the first"
                    ),
                )
            )
            continue
        if not isinstance(rec, dict):
            cat.rejects.append(
                (
                    label,
                    pos,
                    "item",
                    "wrong_type",
                    f"item {key}: expected an object, got {type(rec).__name__}",
                )
            )
            continue
        title, ok_t = _opt_str(rec.get("title"))
        brand, ok_b = _opt_str(rec.get("brand"))
        categories = _categories(rec.get("categories"))
        desc_value = rec.get("description")
        bad = next(
            (
                f
                for f, ok in (
                    ("title", ok_t),
                    ("brand", ok_b),
                    ("categories", categories is not None),
                    ("description", desc_value is None or isinstance(desc_value, str | list)),
                )
                if not ok
            ),
            None,
        )
        if bad is not None:
            cat.rejects.append(
                (label, pos, bad, "wrong_type", f"item {key}: {bad} = {excerpt(rec.get(bad))}")
            )
            continue
        if isinstance(desc_value, list):
            parts, exact = [str(v).strip() for v in desc_value if str(v).strip()], True
        else:
            parts, exact = parse_text_list(desc_value or "")
        inexact += not exact
        cat.items[item_id] = {
            "title": title,
            "brand": brand,
            "categories": categories,
            "description": " ".join(parts) or None,
            "line": pos,
        }
    if inexact:
        cat.notes.append(
            f"{label}: {inexact} descriptions are not valid list literals; split "
            f"on the \"', '\" separator instead (best effort)"
        )
    return cat


def read_info_txt(path: Path, label: str) -> Catalog:
    """Read an info file (``SID\\ttitle\\tid`` or ``title\\tid``); bad lines are rejects."""
    cat = Catalog(label=label)
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            cat.n_records = line_no
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                cat.rejects.append((label, line_no, None, "non_utf8", excerpt(raw)))
                continue
            if not text.strip():
                cat.rejects.append((label, line_no, None, "blank_line", "empty line"))
                continue
            fields = text.split("\t")
            if len(fields) < 2:
                cat.rejects.append(
                    (
                        label,
                        line_no,
                        None,
                        "malformed_row",
                        (f"expected 'SID<TAB>title<TAB>id' or 'title<TAB>id': {excerpt(text)}"),
                    )
                )
                continue
            title_fields = (
                fields[1:-1] if len(fields) >= 3 and _SID.match(fields[0]) else fields[:-1]
            )
            try:
                item_id = int(fields[-1])
            except ValueError:
                cat.rejects.append(
                    (
                        label,
                        line_no,
                        "item_id",
                        "wrong_type",
                        f"last field {excerpt(fields[-1])} is not an integer id",
                    )
                )
                continue
            if item_id in cat.items:
                cat.rejects.append(
                    (
                        label,
                        line_no,
                        "item_id",
                        "duplicate_item",
                        (
                            f"item id {item_id} already read on line "
                            f"{cat.items[item_id]['line']}; kept the first"
                        ),
                    )
                )
                continue
            title = "\t".join(title_fields).strip() or None
            cat.items[item_id] = {
                "title": title,
                "brand": None,
                "categories": [],
                "description": None,
                "line": line_no,
            }
    return cat
