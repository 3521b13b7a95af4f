"""One module per top-level `headway` command group.

Each module defines `register(commands)`, which adds its parsers to the top-level subparsers and
sets `run` on each leaf to a function of the parsed arguments. `headway.cli` finds the modules by
listing this package, so adding a command touches only its own file.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import TypeVar

Config = TypeVar("Config")


def register_all(commands: argparse._SubParsersAction) -> None:
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{module_info.name}").register(commands)


def names_argument(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list of names (camera views, failure kinds)."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def integers_argument(text: str) -> tuple[int, ...]:
    """Parse a comma-separated list of integers (layer widths such as 512,512,512, seeds such as 0,1,2)."""
    try:
        return tuple(int(v) for v in names_argument(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 256,256, got {text!r}") from None


def config_from_args(config_class: type[Config], args: argparse.Namespace, prefix: str = "", **overrides) -> Config:
    """A config dataclass from the parsed flags named after its fields (--actor-lr: actor_lr; with a
    prefix, --awr.noise: noise) and `overrides` (which win); fields without either keep their defaults."""
    values = vars(args)
    key = (lambda name: f"{prefix}.{name}") if prefix else (lambda name: name)
    given = {field.name: values[key(field.name)] for field in fields(config_class) if key(field.name) in values}
    return config_class(**{**given, **overrides})


# -- flags generated from config dataclasses ----------------------------------------------------------
def config_flags(config_class: type, prefix: str = "", skip: tuple[str, ...] = (), required: tuple[str, ...] = ()) -> Callable[[argparse.ArgumentParser], None]:
    """A function adding one flag per field of `config_class` to a parser: --field-name (or
    --prefix.field-name for a nested config), typed from the annotation, its comment in the class
    source as help, the default shown; an unset flag leaves the config's own default. Nested configs,
    dicts and lists get no flag. Pass the result to `lazy_flags`, so the config's module (and torch)
    is imported only when that command runs."""

    def add(parser: argparse.ArgumentParser) -> None:
        hints = typing.get_type_hints(config_class)
        comments = field_comments(config_class)
        for item in fields(config_class):
            kind = _flag_type(hints[item.name])
            if item.name in skip or kind is None:
                continue
            name = f"{prefix}.{item.name}" if prefix else item.name
            default = item.default if item.default is not MISSING else item.default_factory() if item.default_factory is not MISSING else None
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            options = {"dest": name, "default": argparse.SUPPRESS, "required": item.name in required,
                       "help": " ".join(filter(None, [comments.get(item.name, ""), "" if item.name in required else f"(default: {shown})"])).replace("%", "%%")}
            if kind is bool:
                options["action"] = argparse.BooleanOptionalAction
            else:
                options["type"] = kind
            parser.add_argument("--" + name.replace("_", "-"), **options)

    return add


def field_comments(config_class: type) -> dict[str, str]:
    """Each field's comment in the class source: the comment lines right above it and its inline comment."""
    comments: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(config_class).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# "))
            continue
        match = re.match(r"(\w+)\s*:[^#]*?(?:#\s*(.*))?$", stripped)
        if match and not stripped.startswith(("def ", "class ", "@")):
            comments[match.group(1)] = " ".join(above + ([match.group(2)] if match.group(2) else []))
        above = []
    return comments


def _flag_type(hint) -> Callable | type | None:
    """The argparse type of a field annotation; None for what a flag cannot carry."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _flag_type(options[0]) if len(options) == 1 else None
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return integers_argument if item is int else names_argument if item is str else None
    if hint in (int, float, str, bool, Path):
        return hint
    return None


def lazy_flags(parser: argparse.ArgumentParser, *adders: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add these flags only when this parser is the command being run (see `headway.cli.main`)."""
    parser._headway_lazy_flags = adders  # read before parsing, by configure_command


def configure_command(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Walk `argv`'s subcommand words from the top parser and add the lazy flags of every parser on the way."""
    current, words = parser, list(argv)
    while True:
        adders, current._headway_lazy_flags = getattr(current, "_headway_lazy_flags", ()), ()
        for adder in adders:
            adder(current)
        subparsers = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers or not words or words[0] not in subparsers[0].choices:
            return
        current = subparsers[0].choices[words.pop(0)]
