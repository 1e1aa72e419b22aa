"""`key=value` parsing, typed coercion and "did you mean" errors, shared by every CLI.

No heavy imports (serving's CLI uses it). Values are parsed as YAML scalars/lists, so
`epochs=15` is an int, `lr=1e-3` a float, `flip=true` a bool, and `input_shape=96,96,1`
(a comma list) a tuple of ints.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml


class OptionError(ValueError):
    """A bad key or value given by the user; the message is one line meant for them."""


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_SEXAGESIMAL = re.compile(r"[-+]?\d+(:[0-5]?\d)+(\.\d*)?")


def parse_value(text: str) -> Any:
    """Parse one CLI value: YAML scalar, or a comma-separated list of scalars -> tuple."""
    if "," in text and not text.strip().startswith(("[", "{")):
        return tuple(parse_value(part) for part in text.split(",") if part.strip() != "")
    if _SCIENTIFIC.fullmatch(text.strip()):
        return float(text)   # YAML 1.1 reads "1e-3" (no dot) as a string
    if _SEXAGESIMAL.fullmatch(text.strip()):
        return text.strip()  # YAML 1.1 reads "2:4" as 124 (base 60); keep ratios as written
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def parse_kv(args: Iterable[str]) -> dict[str, Any]:
    """['a=1', 'b.c=x'] -> {'a': 1, 'b.c': 'x'}; an arg without '=' is an error."""
    out: dict[str, Any] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise OptionError(f"expected key=value, got {arg!r}")
        out[key.strip()] = parse_value(value)
    return out


def check_keys(given: Iterable[str], allowed: Iterable[str], what: str) -> None:
    allowed = list(allowed)
    for key in given:
        if key not in allowed:
            raise OptionError(f"unknown {what} {key!r}{suggest(key, allowed)}; "
                              f"known: {', '.join(sorted(allowed))}")


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert value to the dataclass field type `annotation`, or raise OptionError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key)
            except OptionError as e:
                errors.append(str(e))
        raise OptionError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise OptionError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}"
                              f"{suggest(str(value), map(str, args))}")
        return value
    if origin in (tuple, list):
        seq = value if isinstance(value, (list, tuple)) else (value,)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = tuple(coerce(v, args[0], key) for v in seq)
        elif origin is tuple and args:
            if len(seq) != len(args):
                raise OptionError(f"{key}: expected {len(args)} values, got {len(seq)} ({value!r})")
            items = tuple(coerce(v, a, key) for v, a in zip(seq, args))
        else:
            items = tuple(coerce(v, args[0], key) if args else v for v in seq)
        return items if origin is tuple else list(items)
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise OptionError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise OptionError(f"{key}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise OptionError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if isinstance(value, (dict, list, tuple)):
            raise OptionError(f"{key}: expected a string, got {value!r}")
        return "" if value is None else str(value)
    return value


def replace_checked(obj: Any, overrides: Mapping[str, Any], what: str) -> Any:
    """dataclasses.replace with unknown-key suggestions and per-field type coercion."""
    fields = {f.name: f for f in dataclasses.fields(obj) if f.init}
    check_keys(overrides, fields, what)
    hints = typing.get_type_hints(type(obj))
    typed = {k: coerce(v, hints[k], k) for k, v in overrides.items()}
    return dataclasses.replace(obj, **typed)


def internal(f: dataclasses.Field) -> bool:
    """A field the program fills, not a user option: not a key, not saved, not in --help."""
    return bool(f.metadata.get("internal"))


def is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None if f.default is dataclasses.MISSING else f.default


def to_dict(obj: Any) -> Any:
    """Config -> plain YAML-able data (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if not internal(f)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def field_help(cls: type, prefix: str = "") -> dict[str, str]:
    """{dotted key: the trailing `# comment` of its field in the class source} for --help,
    sections flattened with dots; keys without a comment are left out."""
    import inspect
    import re

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments = dict(re.findall(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+?)\s*$", source, re.M))
    hints = typing.get_type_hints(cls)
    shown = {field: alias for alias, field in getattr(cls, "ALIASES", {}).items()}
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init or internal(f):
            continue
        key = f"{prefix}{shown.get(f.name, f.name)}"
        if is_section(hints[f.name]):
            out.update(field_help(hints[f.name], key + "."))
        elif f.name in comments:
            out[key] = comments[f.name]
    return out


def describe(cls: type, prefix: str = "", defaults: Any = None) -> list[tuple[str, str, str]]:
    """(key, type, default) rows for --help, sections flattened with dots.

    A section's defaults are those of the instance its parent creates (a parent may build it
    with other values than the section class's own defaults)."""
    rows = []
    hints = typing.get_type_hints(cls)
    shown = {field: alias for alias, field in getattr(cls, "ALIASES", {}).items()}
    for f in dataclasses.fields(cls):
        if not f.init or internal(f):
            continue
        tp = hints[f.name]
        key = f"{prefix}{shown.get(f.name, f.name)}"
        if defaults is not None:
            value = getattr(defaults, f.name)
            if is_section(tp):
                rows += describe(tp, key + ".", value)
            else:
                name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
                rows.append((key, name, repr(to_dict(value))))
            continue
        if is_section(tp):
            rows += describe(tp, key + ".", field_default(f))
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        default = "(required)" if required else field_default(f)
        name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
        rows.append((key, name, repr(to_dict(default)) if default != "(required)" else default))
    return rows
