"""Typed parameters: build config dataclasses from Kedro's parameter dicts, strictly.

Unknown keys, wrong nesting and failed validations raise :class:`ConfigError` naming the full
parameter path (e.g. ``ingest.filters.k_cor``), so a typo fails before a run, not an hour in.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A parameter section does not match its config dataclass."""


def _dataclass_type(tp: Any) -> type | None:
    """The dataclass inside ``tp`` (``X``, ``X | None``, ``Optional[X]``), if any."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            found = _dataclass_type(arg)
            if found is not None:
                return found
    return None


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Construct ``cls`` from ``data``, recursing into nested dataclass fields.

    Tuples given as YAML lists are converted. Errors name ``where`` + the field path.
    """
    if isinstance(data, cls):
        return data
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown parameter(s) {unknown}; "
            f"expected some of {sorted(names)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        sub = _dataclass_type(hints.get(name))
        if sub is not None and isinstance(value, Mapping):
            kwargs[name] = from_dict(sub, value, path)
        elif typing.get_origin(hints.get(name)) is tuple and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def from_tagged_dict(data: Any, tag: str, classes: Mapping[str, type], where: str = ""
                     ) -> tuple[str, Any]:
    """``(name, config)`` from a parameter dict whose ``tag`` key names one of ``classes`` and
    whose other keys are that class's fields (e.g. ``{algorithm: sapo, ...}``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    rest = dict(data)
    name = rest.pop(tag, None)
    if name not in classes:
        raise ConfigError(f"{where}.{tag}={name!r}: expected one of {sorted(classes)}")
    return name, from_dict(classes[name], rest, where)


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain JSON-friendly dicts (tuples become lists)."""
    def _plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [_plain(x) for x in v]
        if isinstance(v, list):
            return [_plain(x) for x in v]
        if isinstance(v, dict):
            return {k: _plain(x) for k, x in v.items()}
        return v

    return _plain(dataclasses.asdict(obj))


def help_of(cls: type) -> dict[str, str]:
    """Field name -> help text, from ``field(metadata={"help": ...})``."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
