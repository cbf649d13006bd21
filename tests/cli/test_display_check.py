"""The pre-flight display check gives a fix instead of Qt's abort."""

from __future__ import annotations

import pytest

from xnorlab.cli import display
from xnorlab.cli.main import main
from xnorlab.common.errors import XnorlabError


@pytest.fixture
def linux_desktop(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(display.sys, "platform", "linux")
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_no_display_is_a_clear_error(
    linux_desktop: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo:lenet"]) == 2
    err = capsys.readouterr().err
    assert "no display found" in err and "xvfb-run" in err


def test_screenshot_without_display_goes_offscreen(linux_desktop: pytest.MonkeyPatch) -> None:
    display.prepare_display(screenshot=True)
    assert display.os.environ["QT_QPA_PLATFORM"] == "offscreen"


def test_missing_libxcb_cursor_names_the_package(linux_desktop: pytest.MonkeyPatch) -> None:
    linux_desktop.setenv("DISPLAY", ":0")
    linux_desktop.setattr(display.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(XnorlabError, match="libxcb-cursor0"):
        display.prepare_display(screenshot=False)


def test_offscreen_platform_needs_nothing(linux_desktop: pytest.MonkeyPatch) -> None:
    linux_desktop.setenv("QT_QPA_PLATFORM", "offscreen")
    linux_desktop.setattr(display.ctypes.util, "find_library", lambda name: None)
    display.prepare_display(screenshot=False)  # no exception
