"""One module per top-level `headway` command group.

Each module defines `register(commands)`, which adds its parsers to the top-level subparsers and
sets `run` on each leaf to a function of the parsed arguments. `headway.cli` finds the modules by
listing this package, so adding a command touches only its own file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from dataclasses import fields
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


def config_from_args(config_class: type[Config], args: argparse.Namespace, **overrides) -> Config:
    """A config dataclass from the parsed flags named after its fields (--actor-lr: actor_lr) and
    `overrides` (which win); fields without either keep their defaults, so a new field needs only its flag."""
    names = {field.name for field in fields(config_class)}
    return config_class(**{**{name: value for name, value in vars(args).items() if name in names}, **overrides})
