"""Typed parameters: build config dataclasses from Kedro's parameter dicts, strictly.

Unknown keys, wrong nesting and failed validations raise :class:`ConfigError` naming the full
parameter path (e.g. ``ingest.filters.k_cor``), so a typo fails before a run, not an hour in.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A parameter section does not match its config dataclass."""


class InputError(ValueError):
    """Input data that cannot be used as it is; the message names the file (and the line and
    field where there is one) and what was expected."""


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


def check_positive(owner: str, name: str, value: Any, *, allow_none: bool = False,
                   allow_zero: bool = False) -> None:
    """Raise ``ValueError("<owner>.<name>=<value>: must be > 0")`` unless ``value`` is a number
    above zero (or zero with ``allow_zero``, or None with ``allow_none``); bools are refused."""
    if value is None and allow_none:
        return
    if (value is None or isinstance(value, bool) or not isinstance(value, (int, float))
            or value < 0 or (value == 0 and not allow_zero)):
        raise ValueError(f"{owner}.{name}={value!r}: must be {'>= 0' if allow_zero else '> 0'}")


def check_positive_fields(config: Any, *names: str, allow_zero: bool = False) -> None:
    """:func:`check_positive` on several fields of a config dataclass, named by its class."""
    for name in names:
        check_positive(type(config).__name__, name, getattr(config, name), allow_zero=allow_zero)


def check_choice(owner: str, name: str, value: Any, options: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``options``."""
    if value not in options:
        raise ValueError(f"{owner}.{name}={value!r}: expected one of {list(options)}")


def _field_default(f: dataclasses.Field) -> Any:
    """A field's default value (its factory called), or None when it has none."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _overrides(base: Any, cls: type, skip: set[str]) -> dict[str, Any]:
    """The values in which ``base`` differs from ``cls()`` (a stage's own defaults, e.g.
    ``AlignConfig.train``'s epochs), leaving out ``skip``. Only these are carried over: a value
    that ``cls.__post_init__`` derives from others (a backbone preset's widths) is derived anew
    from the merged values, never copied."""
    try:
        plain = cls()
    except (TypeError, ValueError):  # required fields: nothing to compare with
        return {}
    return {f.name: getattr(base, f.name) for f in dataclasses.fields(cls)
            if f.init and f.name not in skip and getattr(base, f.name) != getattr(plain, f.name)}


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "",
              base: Any = None) -> T:
    """Construct ``cls`` from ``data``, recursing into nested dataclass fields.

    A nested mapping overrides the field's own default (``AlignConfig.train`` keeps the values of
    its ``default_factory`` that the mapping does not name), so a partial YAML section changes
    only what it names. ``base``: an instance whose values replace the class defaults. Tuples
    given as YAML lists are converted. Errors name ``where`` + the field path.
    """
    if isinstance(data, cls):
        return data
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown parameter(s) {unknown}; "
            f"expected some of {sorted(fields)}"
        )
    kwargs: dict[str, Any] = {}
    if base is not None:
        kwargs = _overrides(base, cls, skip=set(data))
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        sub = _dataclass_type(hints.get(name))
        if sub is not None and isinstance(value, Mapping):
            default = getattr(base, name) if base is not None else _field_default(fields[name])
            kwargs[name] = from_dict(sub, value, path,
                                     base=default if isinstance(default, sub) else None)
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


def describe(config: Any, prefix: str = "") -> list[str]:
    """Every field of a config dataclass, nested ones flattened: ``path: value  # help``."""
    lines = []
    for f in dataclasses.fields(config):
        value, path = getattr(config, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            lines += describe(value, f"{path}.")
            continue
        text = json.dumps(list(value) if isinstance(value, tuple) else value, default=str)
        helptext = " ".join(str(f.metadata.get("help", "")).split())
        lines.append(f"{path}: {text}" + (f"  # {helptext}" if helptext else ""))
    return lines
