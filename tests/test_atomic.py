"""Crash-safe writes leave files readable by others, as a plain open() would."""

from __future__ import annotations

import os
import stat

from headway.atomic import atomic_write_bytes, atomic_write_json


def test_atomic_writes_get_the_umask_mode_not_mkstemps_private_one(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_write_json(tmp_path / "b.json", {"k": 1})
        (tmp_path / "plain").write_bytes(b"x")
    finally:
        os.umask(previous)
    plain = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    for name in ("a.bin", "b.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == plain == 0o644
    assert not list(tmp_path.glob(".*.tmp"))


def _not_plain(root) -> list[str]:
    """Files and folders under `root` whose mode is not what a plain open() / mkdir() gives under the umask."""
    from headway.atomic import file_mode, folder_mode

    wrong = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = folder_mode() if path.is_dir() or mode & stat.S_IXUSR else file_mode()
        if not path.is_symlink() and mode != wanted:
            wrong.append(f"{path.relative_to(root)}: {oct(mode)}")
    return wrong


def test_share_tree_gives_private_files_and_folders_the_plain_modes(tmp_path):
    from headway.atomic import replace_folder

    previous = os.umask(0o022)
    try:
        build = tmp_path / "build"
        (build / "videos").mkdir(parents=True)
        (build / "videos").chmod(0o700)
        (build / "videos" / "file-000.mp4").write_bytes(b"x")
        (build / "videos" / "file-000.mp4").chmod(0o600)  # as lerobot's encoder and safetensors leave them
        replace_folder(build, tmp_path / "out")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out" / "videos").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "videos" / "file-000.mp4").stat().st_mode) == 0o644


def test_datasets_labels_and_checkpoints_headway_writes_are_readable_by_others(tiny_dataset, tmp_path):
    """Walk a collected dataset, a reward checkpoint and a label folder: every file has the mode a
    plain open() gives (0644 under umask 022), none mkstemp's or safetensors' private 0600."""
    from headway.reward.labelling import LabelConfig, label_dataset
    from headway.reward.train import TrainConfig, train_reward_model

    previous = os.umask(0o022)
    try:
        model = tmp_path / "model"
        train_reward_model(
            TrainConfig(datasets=[tiny_dataset], out=model, image_size=32, steps=2, dim=32, segments=2, segment=8, window=4),
            progress=False,
        )
        labels = tmp_path / "labels"
        label_dataset(LabelConfig(dataset=tiny_dataset, model=model, out=labels, chunk_size=3, plots=1), progress=False)
        assert {p.name for p in model.iterdir()} >= {"model.safetensors", "train_state.pt", "config.json"}
        assert _not_plain(model) == []
        assert any(p.suffix == ".mp4" for p in labels.rglob("*")) and any(p.suffix == ".parquet" for p in labels.rglob("*"))
        assert _not_plain(labels) == []
    finally:
        os.umask(previous)
    # the session's dataset (its videos written by lerobot's encoder) was collected under the run's own umask
    assert any(p.suffix == ".mp4" for p in tiny_dataset.rglob("*"))
    assert _not_plain(tiny_dataset) == []
