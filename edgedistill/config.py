"""Config dataclasses <-> YAML, with `key=value` overrides (dotted keys for nested configs).

Every stage has one config dataclass whose fields all have defaults and a help string;
the YAML file is that dataclass written out.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

# `mixed_precision` values of every training stage (auto: bf16 on a GPU that has it, else fp32)
MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")


class ConfigError(ValueError):
    """A config value or key that cannot be used; the message says what to change."""


def to_dict(cfg) -> dict:
    """A dataclass as plain dicts/lists (YAML-safe)."""
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v
    return conv(cfg)


# How a field may change between a run and its resumption: field metadata "resume", the one
# declaration read by the run-folder check (`resumable_fields`) and the stages' hash (`stage_spec`).
BOOKKEEPING = "bookkeeping"  # does not change the result: may change on resume, left out of stage hashes
RESUMABLE = "resumable"  # changes the result, yet a resumed run may take a new value (steps: train on to it)


def resumable_fields(cfg) -> set[str]:
    """Top-level fields of a config dataclass that may differ between a run and its resumption."""
    return {f.name for f in dataclasses.fields(cfg) if f.metadata.get("resume") in (BOOKKEEPING, RESUMABLE)}


def stage_spec(cfg) -> dict:
    """`non_default(cfg)` without its `BOOKKEEPING` fields, nested configs likewise: what a
    stage's hash is taken of (turning on TensorBoard or checkpointing more often redoes nothing)."""
    out = {}
    for f in dataclasses.fields(cfg):
        if f.metadata.get("resume") == BOOKKEEPING:
            continue
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            if sub := stage_spec(value):
                out[f.name] = sub
        elif f.name in (changed := non_default_field(cfg, f)):
            out[f.name] = changed[f.name]
    return out


def non_default_field(cfg, f: dataclasses.Field) -> dict:
    """{name: value} where field `f` of `cfg` differs from its default, else {}."""
    value = getattr(cfg, f.name)
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
    return {f.name: to_dict(value)} if default is dataclasses.MISSING or to_dict(value) != to_dict(default) else {}


def non_default(cfg) -> dict:
    """The fields of a config dataclass that differ from its class defaults, nested configs
    likewise (what a stage's hash is taken of: a field added later with a default leaves the
    hash of a finished stage unchanged)."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            sub = non_default(value)
            if sub:
                out[f.name] = sub
            continue
        out.update(non_default_field(cfg, f))
    return out


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r} (write it as [a, b])")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key} must have {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        item = args[0] if args else Any
        out = [_coerce(v, item, key) for v in value]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Builds dataclass `cls` from a dict, checking keys and types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in data if k not in names]
    if unknown:
        k = unknown[0]
        near = difflib.get_close_matches(k, names, n=1)
        hint = f"; did you mean '{prefix}{near[0]}'?" if near else f"; known keys: {', '.join(names)}"
        raise ConfigError(f"unknown config key '{prefix}{k}'{hint}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 also reads yes/no/on/off as booleans,
    which turns the keywords `stream.keywords=[yes, no, on, off]` into [True, False, ...]."""


_Loader.yaml_implicit_resolvers = {k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def load_yaml(text: str):
    """`yaml.safe_load` with YAML 1.2 booleans (see `_Loader`)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def parse_overrides(overrides: list[str]) -> dict:
    """["a.b=3", "c=[4, 8]"] -> {"a": {"b": 3}, "c": [4, 8]} (values parsed as YAML)."""
    out: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value (e.g. steps=200)")
        key, raw = item.split("=", 1)
        value = load_yaml(raw) if raw.strip() else ""
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                **values) -> T:
    """Defaults < YAML file < keyword values < `key=value` overrides."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file '{p}' does not exist")
        loaded = load_yaml(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{p}' must hold a mapping of keys to values")
        data = loaded
    data = _merge(data, {k: v for k, v in values.items() if v is not None})
    data = _merge(data, parse_overrides(overrides or []))
    return from_dict(cls, data)


def shipped_recipe(name: str) -> Path | None:
    """A YAML recipe that ships with edgedistill (`configs/NAME.yaml`): in the installed package
    (`edgedistill/configs/`) or in the checkout; None if there is none of that name."""
    pkg = Path(__file__).resolve().parent
    for folder in (pkg / "configs", pkg.parent / "configs"):
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    return None


def save_config(cfg, path: str | Path, header: str | None = None) -> None:
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    Path(path).write_text((f"# {header}\n" if header else "") + text)


def describe(cls, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(key, default, help) for every field, nested configs flattened."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if dataclasses.is_dataclass(default):
            rows += describe(type(default), prefix + f.name + ".")
        else:
            rows.append((prefix + f.name, default, f.metadata.get("help", "")))
    return rows
