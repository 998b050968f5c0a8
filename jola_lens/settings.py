"""Reading settings dataclasses from dicts (YAML, JSON, CLI): unknown fields and wrong types in one line.

YAML reads ``lr: 1e-3`` as the *string* "1e-3" (YAML 1.1 needs a dot: ``1.0e-3``), ``epochs: three``
as a string and ``layers: 1`` as an integer. :func:`coerce_fields` turns what has one clear meaning
into the field's type (a numeric string into a number, one layer into a list of one) and refuses
the rest with a :class:`ValueError` naming the section, the field, the type wanted and the value
given, so ``jola-lens train --config`` stops with one line instead of a traceback.

Example:
    >>> from jola_lens.train import TrainConfig
    >>> coerce_fields(TrainConfig, {"lr": "1e-3", "epochs": 3}, "train")
    {'lr': 0.001, 'epochs': 3}
    >>> try:
    ...     coerce_fields(TrainConfig, {"epochs": "three"}, "train")
    ... except ValueError as e:
    ...     print(e)
    train.epochs must be an integer, got 'three'
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Union

__all__ = ["coerce_fields"]


def _is_none_type(t: Any) -> bool:
    return t is type(None)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and any(_is_none_type(a) for a in args):
            return None
        errors = []
        for a in (a for a in args if not _is_none_type(a)):
            try:
                return _coerce(value, a, name)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0] if len(errors) == 1 else f"{name} has the wrong type: got {value!r}")
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
            return value.strip().lower() in ("true", "yes")
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{name} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{name} must be a string, got {value!r}")
    if origin in (list, tuple):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            if isinstance(value, str) and "," in value:
                value = [v.strip() for v in value.split(",") if v.strip()]
            else:
                value = [value]  # one layer / one site: a list of one
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list, got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ValueError(f"{name} must have {len(args)} entries, got {value!r}")
            items = [_coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item = args[0] if args else Any
            items = [_coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a mapping, got {value!r}")
        return value
    return value


def coerce_fields(cls: type, d: Any, section: str | None = None) -> dict[str, Any]:
    """``d`` with every value turned into the type of ``cls``'s field of that name.

    Raises :class:`ValueError` (one line) for a ``d`` that is not a mapping, an unknown field or a
    value of the wrong type that has no one clear reading.
    """
    label = section or cls.__name__
    if not isinstance(d, dict):
        raise ValueError(f"{label} must be a mapping of settings, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a hint that does not resolve: leave the values to the dataclass's own checks
        return dict(d)
    return {k: _coerce(v, hints.get(k, Any), f"{label}.{k}") for k, v in d.items()}


def set_offline_env() -> None:
    """Tell HF libraries not to reach for a hub (a failed lookup otherwise hangs 20-50 s)."""
    import os

    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(k, "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
