"""Atomic file writes: a temp file in the target folder, fsync, then ``os.replace``.

An interrupted write leaves either the old file or none, never a half-written one. Temp names
carry the writer's PID (``.NAME.PID.RANDOM.tmp``), so a later write to the same target removes
the temps of writers that were killed instead of letting them pile up.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from xnorlab.common.errors import XnorlabError

_UMASK = os.umask(0)
os.umask(_UMASK)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete temps of ``target`` left by writers that no longer run; returns what went."""
    pattern = re.compile(re.escape(_temp_prefix(target)) + r"(\d+)\.[^.]+\.tmp")
    removed: list[Path] = []
    try:
        candidates = list(target.parent.iterdir())
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temp_path)`` and move the result to ``path`` atomically.

    ``write`` creates the file at the temp path its own way (``torch.save``, safetensors, ...).
    On any failure the temp is removed and ``path`` is untouched; an ``OSError`` becomes one
    ``XnorlabError`` line.
    """
    target = Path(path)
    remove_stale_temps(target)
    prefix = f"{_temp_prefix(target)}{os.getpid()}."
    try:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise XnorlabError(f"cannot write {target}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; use what open() would
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise XnorlabError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; raises ``XnorlabError`` when it cannot."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> None:
    """``atomic_write_bytes`` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))
