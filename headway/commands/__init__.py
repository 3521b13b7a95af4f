"""One module per top-level `headway` command group.

Each module defines `register(commands)`, which adds its parsers to the top-level subparsers and
sets `run` on each leaf to a function of the parsed arguments. `headway.cli` finds the modules by
listing this package, so adding a command touches only its own file.

Each command imports its library modules inside its functions, on purpose: `headway --help` then loads
no torch, robosuite or config module and stays fast.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import pkgutil
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
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


def add_run_dir_flags(parser: argparse.ArgumentParser, out: str = "--out") -> None:
    """--resume and --overwrite, with the meaning every resumable output folder gives them (headway.run_dir)."""
    parser.add_argument("--resume", action="store_true",
                        help=f"continue an interrupted run in {out} (same settings only), or keep its finished output")
    parser.add_argument("--overwrite", action="store_true", help=f"start over, replacing what {out} holds from another run")


def config_from_args(config_class: type[Config], args: argparse.Namespace, prefix: str = "", **overrides) -> Config:
    """A config dataclass from the parsed flags named after its fields (--actor-lr: actor_lr; with a
    prefix, --awr.noise: noise) and `overrides` (which win); fields without either keep their defaults.
    Text kept for a field's own parser (config_flags' `parse`) is parsed here, so its errors are the
    command's own (printed without a usage message)."""
    values = vars(args)
    key = (lambda name: f"{prefix}.{name}") if prefix else (lambda name: name)
    given = {field.name: values[key(field.name)] for field in fields(config_class) if key(field.name) in values}
    given = {name: value.parse(value.text) if isinstance(value, _Text) else value for name, value in given.items()}
    return config_class(**{**given, **overrides})


# -- flags generated from config dataclasses ----------------------------------------------------------
def config_flags(
    config_class: type,
    prefix: str = "",
    skip: tuple[str, ...] = (),
    required: tuple[str, ...] = (),
    names: Mapping[str, str] | None = None,
    parse: Mapping[str, Callable[[str], object]] | None = None,
) -> Callable[[argparse.ArgumentParser], None]:
    """A function adding one flag per field of `config_class` to a parser: --field-name (or
    --prefix.field-name for a nested config), typed from the annotation (a Literal gives choices, a
    list a repeatable flag, a bool --x/--no-x), its comment in the class source as help, the default
    shown unless that comment speaks of it. An unset flag leaves the config's own default; a field
    without one is required. `names` spells some flags otherwise than their fields ({"image_size":
    "size"} gives --size); `parse` maps fields whose flag takes text to the function making the value
    of it, which config_from_args runs (so its HeadwayError reads as the command's own). Nested
    configs and dicts (unless parsed) get no flag. Pass the result to `lazy_flags`, so the config's
    module (and torch) is imported only when that command runs."""
    names, parse = names or {}, parse or {}

    def add(parser: argparse.ArgumentParser) -> None:
        hints = typing.get_type_hints(config_class)
        comments = field_comments(config_class)
        for item in fields(config_class):
            options = {"type": functools.partial(_Text, parse=parse[item.name])} if item.name in parse else _flag_options(hints[item.name])
            if item.name in skip or options is None:
                continue
            flag = names.get(item.name, item.name).replace("_", "-")
            default = item.default if item.default is not MISSING else item.default_factory() if item.default_factory is not MISSING else MISSING
            needed = item.name in required or default is MISSING
            comment = comments.get(item.name, "")
            shown = "" if needed or "default" in comment else f"(default: {_shown(default)})"  # a comment may say it better
            if "type" in options and "choices" not in options:
                options["metavar"] = flag.upper().replace("-", "_")
            parser.add_argument(
                f"--{prefix}.{flag}" if prefix else f"--{flag}", **options,
                dest=f"{prefix}.{item.name}" if prefix else item.name, default=argparse.SUPPRESS, required=needed,
                help=" ".join(filter(None, [comment, shown])).replace("%", "%%"),
            )

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


def _flag_options(hint) -> dict | None:
    """The argparse options (type, choices, action) of a field annotation; None for what a flag cannot carry."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if str in options:  # Path | str: the config takes the text as it is
            return {"type": str}
        return _flag_options(options[0]) if len(options) == 1 else None
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        return {"type": type(choices[0]), "choices": choices}
    if origin is list:
        item = _flag_options(typing.get_args(hint)[0])
        return {**item, "action": "append"} if item is not None and "action" not in item else None
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return {"type": integers_argument} if item is int else {"type": names_argument} if item is str else None
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint in (int, float, str, Path):
        return {"type": hint}
    return None


def _shown(default) -> str:
    """A default as its flag would be written: sequences comma-separated, a mapping as KEY=VALUE pairs."""
    if isinstance(default, dict):
        default = [f"{key}={value}" for key, value in default.items()]
    if isinstance(default, (tuple, list)):
        return ",".join(map(str, default)) or "none"
    return str(default)


@dataclass(frozen=True)
class _Text:
    """A flag's text waiting for its field's parser (config_flags' `parse`), which config_from_args runs."""

    text: str
    parse: Callable[[str], object]


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
