"""Crash-safe file writes: write a temp file in the same folder, then os.replace.

Everything written here gets the modes a plain `open` / `mkdir` would give (0666 / 0777 less the
umask), so datasets, labels and checkpoints on shared storage are readable by other users and
machines as lerobot's own metadata files are."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask, read without changing it where the OS tells it (a set-and-restore would
    briefly loosen it for other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain `open` gives a new file: 0666 less the umask."""
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The mode a plain `mkdir` gives a new folder: 0777 less the umask."""
    return 0o777 & ~_umask()


def share_tree(root: Path) -> None:
    """Give `root` and everything under it the modes a plain `open` / `mkdir` would (files 0666, folders
    and executables 0777, less the umask). Libraries that write through private temp files (lerobot's
    video encoder, safetensors) leave 0600 files that other users and machines cannot read; a folder
    built by headway passes through here before it is renamed into place. Symlinks are left alone."""
    root = Path(root)
    files, folders = file_mode(), folder_mode()

    def fix(path: str, is_folder: bool) -> None:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            return
        wanted = folders if is_folder or mode & stat.S_IXUSR else files
        if stat.S_IMODE(mode) != wanted:
            os.chmod(path, wanted)

    if root.is_symlink() or not root.exists():
        return
    if not root.is_dir():
        fix(str(root), False)
        return
    fix(str(root), True)
    for folder, subfolders, names in os.walk(root):
        for name in subfolders:
            fix(os.path.join(folder, name), True)
        for name in names:
            fix(os.path.join(folder, name), False)


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> None:
    """Let `write(temporary)` write a file beside `path` (for writers that want a path, not bytes:
    torch.save, safetensors), give it the plain-open mode, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.chmod(temporary, file_mode())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one. The file gets
    the mode a plain `open` would give it (0666 less the umask), not mkstemp's private 0600, so other
    users and machines read it as they read lerobot's own files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def replace_folder(build: Path, out: Path) -> None:
    """Move the finished folder `build` to `out`, replacing an old one only once the new one is whole."""
    import shutil

    build, out = Path(build), Path(out)
    share_tree(build)
    old = out.with_name(out.name + ".old")
    if out.exists():
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
    build.rename(out)
    if old.exists():
        shutil.rmtree(old)


def publish_checkpoint(out: Path, step: int, write: Callable[[Path], None], keep: int | None = None) -> Path:
    """Write `out/checkpoints/step_N` through `write(folder)` into a temp folder, rename it into place,
    then point `out/latest.json` at it (written last, so a kill never leaves a half checkpoint named);
    with `keep`, delete all but the newest `keep` checkpoints."""
    import shutil

    root = Path(out) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:09d}"
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    share_tree(tmp)
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_json(Path(out) / "latest.json", {"step": step, "checkpoint": f"checkpoints/{name}"})
    if keep is not None:
        for old in sorted(root.glob("step_*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out: Path) -> Path | None:
    """The folder `out/latest.json` names (the last complete checkpoint), or None before the first."""
    latest = Path(out) / "latest.json"
    return Path(out) / read_json(latest)["checkpoint"] if latest.exists() else None


def publish_copy(source: Path, out: Path) -> None:
    """Replace the folder `out` with a copy of `source`, whole or not at all (a checkpoint's policy
    published as the run's user-facing policy folder)."""
    import shutil

    build = Path(out).with_name(f".{Path(out).name}.tmp")
    shutil.rmtree(build, ignore_errors=True)
    shutil.copytree(source, build)
    replace_folder(build, out)
