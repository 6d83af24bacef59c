"""Temporary names of one process's own, atomic writes, and cleaning up only what is stale."""

import os
import subprocess
import sys
import time

import pytest

from geoseg.files import (
    STALE_AFTER_S,
    remove_stale_temporaries,
    temporary_name,
    write_atomic,
    write_text_atomic,
)


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def with_owner(path, pid=None, host=None):
    """``path`` (a ``temporary_name``) renamed as if another process (``pid``) or another machine
    (``host``) had made it."""
    name, host_now, pid_now, token, tail = path.name.rsplit(".", 4)
    assert (int(pid_now), tail) == (os.getpid(), "tmp")
    new = path.with_name(".".join([name, host or host_now, str(pid or pid_now), token, tail]))
    path.rename(new)
    return new


def test_temporary_names_are_unique_hidden_and_created_exclusively(tmp_path):
    target = tmp_path / "map.png"
    names = [temporary_name(target) for _ in range(20)]
    assert len(set(names)) == 20
    for name in names:
        assert name.parent == tmp_path and name.is_file() and name.stat().st_size == 0
        assert name.name.startswith(".map.png.") and name.name.endswith(".tmp")
        assert f".{os.getpid()}." in name.name
    folder = temporary_name(tmp_path / "combined", folder=True)
    assert folder.is_dir() and not any(folder.iterdir())
    assert not target.exists()


def test_a_name_already_taken_is_never_reused(tmp_path, monkeypatch):
    tokens = iter(["aaaaaaaa", "aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr("geoseg.files.secrets.token_hex", lambda size: next(tokens))
    first = temporary_name(tmp_path / "map.png")
    first.write_bytes(b"another writer's data")
    second = temporary_name(tmp_path / "map.png")
    assert first != second and second.name.endswith(".bbbbbbbb.tmp")
    assert first.read_bytes() == b"another writer's data"


def test_atomic_writes_leave_no_temporary_and_a_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_text_atomic(path, "one\n")
    write_atomic(path, lambda tmp: tmp.write_text("two\n"))
    assert path.read_text() == "two\n"

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, fail)
    assert path.read_text() == "two\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_stale_cleanup_spares_the_temporaries_of_live_writers(tmp_path):
    mine = temporary_name(tmp_path / "a.png")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = with_owner(temporary_name(tmp_path / "b.png"), pid=sleeper.pid)
        dead = with_owner(temporary_name(tmp_path / "c.png"), pid=dead_pid())
        dead_folder = with_owner(temporary_name(tmp_path / "d", folder=True), pid=dead_pid())
        (dead_folder / "Train").mkdir()
        (dead_folder / "Train" / "x.png").write_bytes(b"x")
        precious = tmp_path / "precious"
        precious.mkdir()
        (precious / "keep.txt").write_text("keep me")
        dead_link = with_owner(temporary_name(tmp_path / "e"), pid=dead_pid())
        dead_link.unlink()
        dead_link.symlink_to(precious, target_is_directory=True)
        # on another machine: whether its writer runs cannot be told; only its age can
        elsewhere = with_owner(temporary_name(tmp_path / "f.png"), host="other-node")
        elsewhere_old = with_owner(temporary_name(tmp_path / "g.png"), host="other-node")
        long_ago = time.time() - STALE_AFTER_S - 60
        os.utime(elsewhere_old, (long_ago, long_ago))
        legacy = tmp_path / ".h.png.tmp"  # an older version's fixed name: no writer recorded
        legacy.write_bytes(b"half a png")
        finished = tmp_path / "c.png"
        finished.write_bytes(b"a finished file")

        assert remove_stale_temporaries(tmp_path, stems=["a", "b"]) == 0
        assert remove_stale_temporaries(tmp_path) == 5
        for kept in (mine, running, elsewhere, finished):
            assert kept.exists(), kept.name
        for removed in (dead, dead_folder, dead_link, elsewhere_old, legacy):
            assert not removed.exists() and not removed.is_symlink(), removed.name
        assert (precious / "keep.txt").read_text() == "keep me"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_temporaries(tmp_path, stems=["b"]) == 1  # its writer has gone now
