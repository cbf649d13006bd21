"""Pre-flight check of the display before Qt starts, so users get a hint, not Qt's abort.

Qt aborts the process ("could not load the Qt platform plugin xcb") when there is no display or
when ``libxcb-cursor0`` (Qt >= 6.5) is missing; both are common on fresh Linux installs.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

from xnorlab.common.errors import XnorlabError

_HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc")


def prepare_display(screenshot: bool) -> None:
    """Choose or check the Qt platform; raise ``XnorlabError`` with a fix when none can work.

    A ``--screenshot`` run without a display renders offscreen (no window is needed).
    """
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform.startswith(_HEADLESS_PLATFORMS) or not sys.platform.startswith("linux"):
        return
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if not has_display:
        if screenshot:
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
            return
        raise XnorlabError(
            "no display found (DISPLAY/WAYLAND_DISPLAY unset): run on a desktop, or "
            "'xvfb-run -a xnorlab', or set QT_QPA_PLATFORM=offscreen"
        )
    uses_xcb = platform.startswith("xcb") or not os.environ.get("WAYLAND_DISPLAY")
    if uses_xcb and ctypes.util.find_library("xcb-cursor") is None:
        raise XnorlabError(
            "Qt needs libxcb-cursor0 to open a window on X11 and it is not installed "
            "(Debian/Ubuntu: sudo apt install libxcb-cursor0; Fedora: xcb-util-cursor)"
        )
