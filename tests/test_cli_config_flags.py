"""Flags generated from config dataclasses (headway.commands.config_flags): one source of truth."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from headway.cli import build_parser
from headway.commands import config_flags, config_from_args, configure_command
from headway.errors import HeadwayError


@dataclass
class Toy:
    dataset: Path | None = None  # where the episodes are
    # how many; a comment above the field
    steps: int = 300
    rate: float = 1e-3
    views: tuple[str, ...] = ("front", "wrist")
    widths: tuple[int, ...] = (64, 64)
    fast: bool = False
    extra: dict = field(default_factory=dict)


def _parser(**options) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    config_flags(Toy, **options)(parser)
    return parser


def test_every_field_a_flag_can_carry_gets_one_with_its_type_and_comment():
    parser = _parser()
    args = parser.parse_args(["--dataset", "d", "--steps", "7", "--views", "a,b", "--widths", "8,9", "--fast"])
    assert config_from_args(Toy, args) == Toy(dataset=Path("d"), steps=7, views=("a", "b"), widths=(8, 9), fast=True)
    text = parser.format_help()
    assert "where the episodes are" in text and "a comment above the field" in text and "(default: 300)" in text
    assert "--extra" not in text  # a dict cannot be a flag


def test_unset_flags_leave_the_configs_defaults():
    assert config_from_args(Toy, _parser().parse_args([])) == Toy()


def test_prefixed_and_required_flags():
    parser = _parser(prefix="toy", required=("dataset",), skip=("rate",))
    with pytest.raises(SystemExit):
        parser.parse_args([])
    args = parser.parse_args(["--toy.dataset", "d", "--toy.steps", "3"])
    assert config_from_args(Toy, args, "toy") == Toy(dataset=Path("d"), steps=3)
    assert "--toy.rate" not in parser.format_help()


def test_rl_finetune_flags_come_from_its_configs_with_separate_method_settings():
    from headway.policy.rl_algo import AgentConfig
    from headway.policy.rl_awr import AWRConfig

    argv = ["rl", "finetune", "--init", "p", "--awr.noise", "0.2", "--agent.noise", "0.3", "--awr.refit-every", "4", "--no-agent.ibrl"]
    parser = build_parser()
    configure_command(parser, argv)
    args = parser.parse_args(argv)
    assert config_from_args(AWRConfig, args, "awr") == AWRConfig(noise=0.2, refit_every=4)
    assert config_from_args(AgentConfig, args, "agent") == AgentConfig(noise=0.3, ibrl=False)
    assert args.init == Path("p") and not hasattr(args, "steps")  # unset: OnlineRLConfig's own default applies


@dataclass
class Shapes:
    runs: list[Path]  # no default: a required, repeatable flag
    mode: Literal["fast", "slow"] = "fast"
    model: Path | str | None = None  # a folder or a spec
    image_size: int = 84
    weights: dict[str, float] = field(default_factory=lambda: {"a": 0.5, "b": 0.5})


def _weights(text: str) -> dict[str, float]:
    pairs = [part.partition("=") for part in text.split(",")]
    if any(not sep for _, sep, _ in pairs):
        raise HeadwayError(f"write KEY=VALUE pairs, got {text!r}")
    return {key: float(value) for key, _, value in pairs}


def _shapes_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shapes")
    config_flags(Shapes, names={"runs": "run", "image_size": "size"}, parse={"weights": _weights})(parser)
    return parser


def test_literals_lists_unions_renames_and_parsed_text():
    parser = _shapes_parser()
    args = parser.parse_args(["--run", "a", "--run", "b", "--mode", "slow", "--model", "lerobot:sarm:x", "--size", "32", "--weights", "a=1"])
    assert config_from_args(Shapes, args) == Shapes(runs=[Path("a"), Path("b")], mode="slow", model="lerobot:sarm:x", image_size=32, weights={"a": 1.0})
    assert config_from_args(Shapes, parser.parse_args(["--run", "a"])) == Shapes(runs=[Path("a")])
    text = parser.format_help()
    assert "{fast,slow}" in text and "--size SIZE" in text and "--image-size" not in text and "(default: a=0.5,b=0.5)" in text
    for argv in (["--mode", "fast"], ["--run", "a", "--mode", "medium"]):  # --run is required; --mode takes only its choices
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


def test_parsed_text_fails_when_the_config_is_built_not_while_parsing():
    args = _shapes_parser().parse_args(["--run", "a", "--weights", "oops"])
    with pytest.raises(HeadwayError, match="KEY=VALUE"):
        config_from_args(Shapes, args)
