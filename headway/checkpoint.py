"""Checkpoint folders: `config.json` (with its `format` and `format_version`) + `model.safetensors`.

Every headway model and policy is saved this way; this module writes them atomically and reads
them back with errors that say what is wrong and how to fix it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from headway import __version__
from headway.atomic import atomic_write_json, atomic_write_with
from headway.errors import HeadwayError
from headway.registry import Registry

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

T = TypeVar("T")


def save_checkpoint(path: Path | str, tensors: dict, format: str, format_version: int, settings: dict) -> None:
    """Write the weights, then `config.json` (format, versions and `settings`), each atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    # safetensors writes 0600 files; atomic_write_with gives them the plain-open mode others can read
    atomic_write_with(path / WEIGHTS_FILE, lambda temporary: save_file(tensors, str(temporary)))
    atomic_write_json(
        path / CONFIG_FILE, {"format": format, "format_version": format_version, "headway_version": __version__, **settings}
    )


def read_config(path: Path | str, what: str, fix: str) -> dict:
    """`config.json` of the checkpoint folder `path`; `what` names the kind, `fix` says how to get a good one."""
    path = Path(path)
    config_path = path / CONFIG_FILE
    if not config_path.exists():
        raise HeadwayError(f"{path} is not a headway {what} checkpoint: {CONFIG_FILE} is missing. {fix}")
    try:
        return json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise HeadwayError(f"{config_path} is not valid JSON ({error}); the checkpoint is damaged. {fix}") from None


def read_checked_config(
    path: Path | str, format: str, format_version: int, what: str, fix: str, needs_weights: bool = True
) -> dict:
    """`config.json`, after checking the checkpoint is whole and of this format and version."""
    path = Path(path)
    meta = read_config(path, what, fix)
    if needs_weights and not (path / WEIGHTS_FILE).exists():
        raise HeadwayError(f"{path} has no {WEIGHTS_FILE}; the {what} checkpoint is incomplete. {fix}")
    if meta.get("format") != format:
        raise HeadwayError(f"{path} holds a {meta.get('format')!r} checkpoint, not a {what} ({format})")
    if meta.get("format_version") != format_version:
        raise HeadwayError(
            f"{path} was written by headway {meta.get('headway_version')} in {what} checkpoint format "
            f"{meta.get('format_version')}; this headway ({__version__}) reads format {format_version}. "
            f"{fix}, or use the headway version that wrote it"
        )
    return meta


def load_weights(path: Path | str) -> dict:
    """The tensors of `model.safetensors` in the checkpoint folder `path`."""
    from safetensors.torch import load_file

    weights_path = Path(path) / WEIGHTS_FILE
    try:
        return load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise HeadwayError(f"{weights_path} cannot be read ({error}); the checkpoint is damaged") from None


def load_state(module, path: Path | str, ignore: Callable[[str], bool] = lambda key: False) -> None:
    """Load `model.safetensors` into a torch module; keys for which `ignore` is true may be absent."""
    weights_path = Path(path) / WEIGHTS_FILE
    try:
        missing, unexpected = module.load_state_dict(load_weights(path), strict=False)
    except RuntimeError as error:  # shapes that do not match the config
        raise HeadwayError(f"{weights_path} does not match its config ({error})") from None
    missing = [k for k in missing if not ignore(k)]
    if missing or unexpected:
        raise HeadwayError(f"{weights_path} does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")


def load_by_format(path: Path | str, formats: Registry[Callable[[Path, str | None], T]], device: str | None, what: str, fix: str) -> T:
    """Open a checkpoint with the loader registered for the `format` its config names."""
    meta = read_config(path, what, fix)
    return formats.get(str(meta.get("format")))(Path(path), device)
