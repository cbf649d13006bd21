"""Checks on the files a user names, made before any work or side effect.

An input must be a regular file of bounded size (a FIFO or ``/dev/zero`` would block or never
end); an output must be creatable: its folder exists and is writable, and nothing but a regular
file stands at its path. Each failure is one ``XnorlabError`` line naming the path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from xnorlab.common.errors import XnorlabError, quoted

MIB = 1 << 20


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size_text(n_bytes: int) -> str:
    return f"{n_bytes / MIB:.1f} MiB" if n_bytes >= MIB else f"{n_bytes} bytes"


def existing(path: str | Path) -> Path | None:
    """``path`` (user-expanded) if something exists there, else None; a name the system
    cannot even look up (too long, bad characters) exists nowhere rather than raising."""
    target = Path(path).expanduser()
    try:
        return target if target.exists() else None
    except (OSError, ValueError):
        return None


def check_input_file(path: str | Path, *, what: str = "file", max_bytes: int) -> Path:
    """``path`` as a Path if it is an existing regular file of at most ``max_bytes``."""
    target = Path(path).expanduser()
    try:
        info = target.stat()
    except FileNotFoundError:
        raise XnorlabError(f"cannot read {what} {target}: no such file") from None
    except OSError as exc:
        raise XnorlabError(f"cannot read {what} {target}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise XnorlabError(f"{what} {target} is {_kind(info.st_mode)}, not a file")
    if info.st_size > max_bytes:
        raise XnorlabError(
            f"{what} {target} is {_size_text(info.st_size)}, over the "
            f"{_size_text(max_bytes)} this reads"
        )
    return target


def read_bounded(path: str | Path, *, what: str = "file", max_bytes: int) -> bytes:
    """The bytes of a checked input file, never more than ``max_bytes`` (it may grow)."""
    target = check_input_file(path, what=what, max_bytes=max_bytes)
    try:
        with open(target, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise XnorlabError(f"cannot read {what} {target}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise XnorlabError(f"{what} {target} grew over {_size_text(max_bytes)} while read")
    return data


def check_output_path(
    path: str | Path, *, what: str = "output", suffixes: Sequence[str] | None = None
) -> Path:
    """``path`` as a Path if a file can be written there (see the module docstring).

    ``suffixes``: the allowed endings (lower case, with the dot); None allows any.
    """
    target = Path(path).expanduser()
    if not target.name or str(path).endswith(os.sep):
        raise XnorlabError(f"{what} {path!r} names a folder, not a file")
    # A name the system cannot look up (a part over its length limit) cannot be written either.
    try:
        mode = target.stat().st_mode if target.exists() or target.is_symlink() else None
        parent_is_dir = target.parent.is_dir()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise XnorlabError(f"cannot write {what} {quoted(str(target))}: {reason}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise XnorlabError(f"{what} {target} is {_kind(mode)}, not a file to overwrite")
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise XnorlabError(f"{what} {target}: use one of {', '.join(suffixes)}")
    parent = target.parent
    if not parent_is_dir:
        raise XnorlabError(f"cannot write {what} {target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise XnorlabError(f"cannot write {what} {target}: folder {parent} is not writable")
    return target
