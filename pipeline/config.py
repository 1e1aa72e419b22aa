"""Typed per-stage configs: YAML file first, then `key=value` overrides, then validation.

A stage config is a dataclass; nested dataclasses are sections addressed with dots
(`augment.hflip=true`). Two class attributes make CLIs short:
  SHORTHAND = "source"  -> `data=digits` means `data.source=digits` (YAML `data: digits` too)
  EXTRA = "options"     -> unknown keys of that section go into its `options` dict, to be
                           validated by whoever owns them (e.g. family options of a model).
  ALIASES = {"from": "start"} -> a key users type for a field Python cannot name.
Unknown keys fail with a did-you-mean; each dataclass may define validate() -> None that
raises OptionError. The resolved config is saved (YAML) next to every output.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from models.atomic import write_text
from models.options import (  # noqa: F401 (describe, to_dict: pipeline.config's public names too)
    OptionError,
    coerce,
    describe,
    field_default,
    internal,
    is_section,
    parse_kv,
    suggest,
    to_dict,
)

T = TypeVar("T")


GIVEN = "given"   # an internal field that load_config fills with the dotted keys the user set


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for p in parents:
        child = node.get(p)
        if not isinstance(child, dict):
            child = {} if child is None else {"__shorthand__": child}
            node[p] = child
        node = child
    if isinstance(node.get(leaf), dict) and not isinstance(value, dict):
        node[leaf]["__shorthand__"] = value
    else:
        node[leaf] = value


def build(cls: type[T], raw: Mapping[str, Any] | None, path: str = "", base: Any = None) -> T:
    """Make `cls` from a (possibly nested) mapping, coercing types, then validate it.

    Keys not given come from `base` (an instance of cls) when there is one: a parent's default
    for the section (TrainConfig builds `augment` as the "light" preset, so `augment.fill=x`
    keeps that preset). Setting the section's SHORTHAND (`augment=standard`, `model=lenet`)
    picks a fresh base: the class defaults, not the parent's options for another choice.
    """
    aliases = getattr(cls, "ALIASES", {})
    raw = {aliases.get(key, key): value for key, value in (raw or {}).items()}
    short = getattr(cls, "SHORTHAND", None)
    if "__shorthand__" in raw:
        if short is None:
            raise OptionError(f"{path or cls.__name__} is a section; set its keys with {path}.KEY=VALUE")
        raw.setdefault(short, raw.pop("__shorthand__"))
    if short is not None and short in raw:
        base = None
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not internal(f)}
    hints = typing.get_type_hints(cls)
    extra_field = getattr(cls, "EXTRA", None)
    kwargs: dict[str, Any] = {}
    extras: dict[str, Any] = dict(raw.pop(extra_field, None) or {}) if extra_field else {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            if extra_field:
                extras[key] = value
                continue
            shown = {k: k for k in fields} | {field: alias for alias, field in aliases.items()}
            raise OptionError(f"unknown key {where!r}{suggest(key, shown.values())}; "
                              f"known: {', '.join(sorted(shown.values()))}")
        tp = hints[key]
        if is_section(tp):
            if not isinstance(value, Mapping):
                value = {"__shorthand__": value}
            child = getattr(base, key) if base is not None else field_default(fields[key])
            kwargs[key] = build(tp, value, where, child if dataclasses.is_dataclass(child) else None)
        else:
            kwargs[key] = coerce(value, tp, where)
    if extra_field:
        kwargs[extra_field] = {**(getattr(base, extra_field) if base is not None else {}), **extras}
    if base is not None:
        for name in fields:
            kwargs.setdefault(name, getattr(base, name))
    try:
        obj = cls(**kwargs)
    except TypeError as e:  # a required field missing
        raise OptionError(f"{path or cls.__name__}: {e}") from None
    validate = getattr(obj, "validate", None)
    if validate:
        validate()
    return obj


def load_config(cls: type[T], overrides: Mapping[str, Any] | list[str] | None = None,
                config_file: str | os.PathLike | None = None) -> T:
    """YAML file (optional), then overrides ({"a.b": 1} or ["a.b=1"]), then validation."""
    tree: dict[str, Any] = {}
    if config_file:
        path = Path(config_file)
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise OptionError(f"{path}: config file not found") from None
        except yaml.YAMLError as e:
            raise OptionError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise OptionError(f"{path}: a config file must be a mapping of key: value")
        for key, value in (loaded or {}).items():
            _set_dotted(tree, str(key), value)
    if isinstance(overrides, list):
        overrides = parse_kv(overrides)
    for key, value in (overrides or {}).items():
        _set_dotted(tree, key, value)
    obj = build(cls, tree)
    # which keys the user set (file or overrides), dotted, for stages whose defaults depend on
    # the data (pipeline.recipes): an internal field, neither saved nor compared
    if any(f.name == GIVEN and internal(f) for f in dataclasses.fields(obj)):
        obj = dataclasses.replace(obj, **{GIVEN: frozenset(_paths(tree))})
    return obj


def _paths(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in tree.items():
        key = prefix if key == "__shorthand__" else f"{prefix}{'.' if prefix else ''}{key}"
        if key:
            out.append(key)
        if isinstance(value, Mapping):
            out += _paths(value, key)
    return out


def dump_config(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def save_config(obj: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically."""
    return write_text(path, dump_config(obj))
