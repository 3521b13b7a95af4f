"""The package installs as one import package and never hides Hugging Face `datasets`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from headway.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def test_lerobot_dataset_and_headway_datasets_import_together():
    import datasets as hf_datasets
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    import headway.datasets
    from headway.datasets.reader import DatasetReader

    assert hasattr(hf_datasets, "load_dataset"), "Hugging Face datasets was shadowed"
    assert Path(headway.datasets.__file__).parent == ROOT / "datasets"
    assert LeRobotDataset and DatasetReader


def test_bare_datasets_import_from_the_repository_root_fails_clearly():
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import datasets"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "headway.datasets" in result.stderr and "Hugging Face" in result.stderr


def _subcommand_paths(parser, prefix=()):
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            yield prefix + (name,)
            yield from _subcommand_paths(sub, prefix + (name,))


@pytest.mark.parametrize("path", list(_subcommand_paths(build_parser())), ids=" ".join)
def test_every_subcommand_has_help(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    assert "usage: headway" in capsys.readouterr().out


def test_console_script_is_installed():
    result = subprocess.run(["headway", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "sim" in result.stdout
