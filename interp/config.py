"""One config system: frozen dataclasses with ``to_dict`` and a strict ``from_dict``.

A config is a frozen dataclass that inherits :class:`Config`::

    @dataclass(frozen=True)
    class TrainConfig(Config):
        steps: int = 100
        lr: float = 1e-3
        layers: tuple[int, ...] = ()

``to_dict()`` gives JSON-ready data: tuples become lists, a nested config its own dict, a
:class:`~interp.sites.Site` its name. ``from_dict(d)`` is strict and reads what
``to_dict`` wrote (``from_dict(c.to_dict()) == c``): an unknown key, a missing required
field or a value of the wrong type is a :class:`~interp.errors.ConfigError` that names
it; lists become tuples where a field is a tuple, a mapping becomes the nested config and
a string the :class:`Site` a field asks for. Nothing else is converted: an ``int`` given
for a ``float`` field stays an ``int``, so ``to_dict`` (and every cache key made from
it) shows what was given. :func:`check_types` checks an instance's fields the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Mapping
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from interp.errors import ConfigError, SiteError
from interp.sites import Site

__all__ = ["Config", "check_keys", "check_types", "from_dict", "to_plain"]

_WHAT = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a mapping",
    Site: "a site name like 'blocks.3.hook_resid_post'",
}
_PLURAL = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


class Config:
    """Mixin of a frozen dataclass config: :meth:`to_dict` and a strict :meth:`from_dict`.

    ``config_name`` is how error messages call the config (default: the class name).
    """

    config_name: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return {f.name: to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping):
        return from_dict(cls, d)


def _name(cls) -> str:
    return getattr(cls, "config_name", "") or cls.__name__


def to_plain(value):
    """JSON-ready data: configs as dicts, tuples as lists, sites as their names."""
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, Site):
        return value.name
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def check_keys(cls, d, what: str | None = None) -> None:
    """A :class:`ConfigError` unless ``d`` is a mapping whose keys are all fields of ``cls``."""
    what = what or _name(cls)
    if not isinstance(d, Mapping):
        raise ConfigError(f"{what}: expected a mapping, got {type(d).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in d if k not in known)
    if unknown:
        raise ConfigError(
            f"unknown {what} keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )


def from_dict(cls, d: Mapping, what: str | None = None):
    """``cls(**d)`` after the strict checks of the module docstring."""
    what = what or _name(cls)
    check_keys(cls, d, what)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in d
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{what} needs {missing}")
    hints = _hints(cls)
    values = {k: _coerce(v, hints.get(k, Any), f"{what} field {k!r}") for k, v in d.items()}
    return cls(**values)


def check_types(obj, what: str | None = None) -> None:
    """A :class:`ConfigError` naming the first field of ``obj`` whose value does not fit its
    annotation (for a ``__post_init__``; lists pass where tuples are asked for)."""
    what = what or _name(type(obj))
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        _coerce(getattr(obj, f.name), hints.get(f.name, Any), f"{what} field {f.name!r}")


@functools.cache
def _hints(cls) -> dict:
    return get_type_hints(cls)


def _describe(hint) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        arms = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(arms) + (" or null" if type(None) in args else "")
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_PLURAL.get(args[0], 'items')}"
        return f"a list of {len(args)} items"
    if isinstance(hint, type) and issubclass(hint, Config):
        return "a mapping"
    return _WHAT.get(origin or hint, getattr(hint, "__name__", str(hint)))


def _coerce(value, hint, where: str):
    """``value`` as the field's annotation ``hint`` asks (see the module docstring)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arm in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arm, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} must be {_describe(hint)} (got {value!r})")
    if origin is tuple:
        return _coerce_tuple(value, hint, args, where)
    if isinstance(hint, type) and issubclass(hint, Config):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            try:
                return hint.from_dict(value)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
    elif hint is Site and isinstance(value, str):
        try:
            return Site.parse(value)
        except SiteError as e:
            raise ConfigError(f"{where}: {e}") from None
    elif _fits(value, origin or hint):
        return value
    raise ConfigError(f"{where} must be {_describe(hint)} (got {value!r})")


def _coerce_tuple(value, hint, args, where: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be {_describe(hint)} (got {value!r})")
    if len(args) == 2 and args[1] is Ellipsis:
        arms = [args[0]] * len(value)
    elif len(args) == len(value):
        arms = list(args)
    else:
        raise ConfigError(f"{where} must be {_describe(hint)} (got {value!r})")
    return tuple(
        _coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, arms, strict=True))
    )


def _fits(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is dict:
        return isinstance(value, Mapping)
    return not isinstance(kind, type) or isinstance(value, kind)
