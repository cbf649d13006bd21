"""Boundary checks on user-named files and atomic writes that leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xnorlab.common.atomic import atomic_write, atomic_write_bytes, remove_stale_temps
from xnorlab.common.errors import XnorlabError
from xnorlab.common.files import check_input_file, check_output_path, read_bounded


def test_input_file_refuses_folders_fifos_devices_and_big_files(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 101)
    cases = {
        tmp_path: "is a directory",
        fifo: "is a pipe",
        Path("/dev/zero"): "is a device",
        big: "over the 100 bytes",
        tmp_path / "missing": "no such file",
    }
    for path, message in cases.items():
        with pytest.raises(XnorlabError, match=message):
            check_input_file(path, what="image", max_bytes=100)
    ok = tmp_path / "ok.bin"
    ok.write_bytes(b"abc")
    assert read_bounded(ok, max_bytes=3) == b"abc"


def test_output_path_checks_the_folder_and_what_stands_there(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    cases = {
        str(tmp_path): "is a directory",
        str(tmp_path / "sub") + os.sep: "names a folder",
        str(tmp_path / "nope" / "m.pt"): "does not exist",
        str(fifo): "is a pipe",
        str(tmp_path / "m.txt"): "use one of .pt",
        # names the system cannot look up: one part over its length limit, in the file or
        # in a folder on the way
        str(tmp_path / ("a" * 300 + ".pt")): "cannot write output .*File name too long",
        str(tmp_path / ("d" * 300) / "m.pt"): "cannot write output .*File name too long",
    }
    if os.geteuid() != 0:  # root writes anywhere
        cases[str(locked / "m.pt")] = "not writable"
    for path, message in cases.items():
        with pytest.raises(XnorlabError, match=message):
            check_output_path(path, suffixes=(".pt",))
    assert check_output_path(tmp_path / "m.pt", suffixes=(".pt",)) == tmp_path / "m.pt"
    assert not (tmp_path / "m.pt").exists()  # a check never creates the file


def test_failed_atomic_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_temps_of_dead_writers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_temp = tmp_path / f".model.pt.{int(dead.stdout)}.abc.tmp"
    live_temp = tmp_path / f".model.pt.{os.getppid()}.abc.tmp"
    other = tmp_path / ".other.pt.1.abc.tmp"
    for path in (dead_temp, live_temp, other):
        path.write_bytes(b"x")
    assert remove_stale_temps(target) == [dead_temp]
    assert live_temp.exists() and other.exists()
