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
