"""Loading typed, frozen conf sections (dataclasses) from YAML and ``--set a.b=value`` items.

The machinery only: it knows no section. ``pipeline.config`` assembles the sections (each with its
package where it has one, e.g. ``pipeline.scoring.conf``); each section checks its own values in
``__post_init__`` with ``require``. Unknown keys, wrong types and bad values raise ``ConfigError``
naming the key; numbers stay numbers, also inside mappings (only ``Mapping[str, str]`` settings,
such as Spark's, keep their text).
"""
from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import types
import typing
from typing import Any, Literal, Mapping

import yaml

from pipeline.dates import parse_date
from pipeline.errors import ConfigError, PipelineError


def frozen_dict() -> Mapping[str, Any]:
    return types.MappingProxyType({})


def to_dict(cfg: Any) -> Any:
    """The configuration as plain YAML-ready values (dates as ISO strings)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, tuple):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dt.date):
        return cfg.isoformat()
    return cfg


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


class _Loader(yaml.SafeLoader):
    """Safe YAML without implicit timestamps: dates stay text until ``parse_date`` names the key."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _load_yaml(text: Any) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = _load_yaml(fh)
    except FileNotFoundError:
        raise ConfigError(f"conf file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'conf'}: expected a mapping, got {data!r}")
    hints = _hints(cls)
    for key in data:
        if key not in hints:
            raise ConfigError(f"unknown key '{prefix}{key}'")
    values = {key: _coerce(hints[key], value, f"{prefix}{key}") for key, value in data.items()}
    return cls(**values)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, f"{key}.")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], item, f"{key}[{i}]") for i, item in enumerate(value))
    if _is_mapping(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kind = args[1]  # Spark-style settings (str) keep their text; numbers stay numbers
        return types.MappingProxyType({str(k): _scalar_text(v, f"{key}.{k}") if kind is str
                                       else _coerce(kind, v, f"{key}.{k}") for k, v in value.items()})
    if tp is dt.date:
        try:
            return parse_date(value, key)
        except PipelineError as err:
            raise ConfigError(str(err)) from None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"config type {tp!r} of {key} is not supported")  # a bug in this module


def _scalar_text(value: Any, key: str) -> str:
    """Spark-style setting values: strings, or scalars written as Spark expects them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ConfigError(f"{key}: expected a scalar value, got {value!r}")


def apply_override(root: type, raw: dict, item: str) -> None:
    """Sets ``a.b=value`` in the raw mapping, walking the schema so that mapping-typed keys
    (``spark.conf``) take the rest of the dotted path as one key."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    parts = key.split(".")
    cls, node = root, raw
    for i, part in enumerate(parts):
        hints = _hints(cls)
        if part not in hints:
            raise ConfigError(f"unknown key '{'.'.join(parts[:i + 1])}' in --set {item}")
        tp = hints[part]
        last = i == len(parts) - 1
        if dataclasses.is_dataclass(tp) and not last:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[:i + 1])}: expected a mapping")
            cls, node = tp, child
        elif _is_mapping(tp) and not last:
            # One entry of a mapping: added to the mapping of the file, or of the defaults.
            mapping = node.setdefault(part, dict(getattr(cls(), part)))
            mapping[".".join(parts[i + 1:])] = _parse_override_value(typing.get_args(tp)[1], text)
            return
        elif last:
            node[part] = _parse_override_value(tp, text)
            return
        else:
            raise ConfigError(f"unknown key '{'.'.join(parts[:i + 2])}' in --set {item}")


def _is_mapping(tp: Any) -> bool:
    return typing.get_origin(tp) in (collections.abc.Mapping, dict)


def _parse_override_value(tp: Any, text: str) -> Any:
    """A ``--set`` value: taken literally for string keys, read as YAML otherwise."""
    is_str = tp is str or (typing.get_origin(tp) is typing.Union and str in typing.get_args(tp))
    if is_str and text not in ("null", "~"):
        return text
    try:
        return _load_yaml(text)
    except yaml.YAMLError:
        return text  # reported as a type error by _coerce, naming the key
