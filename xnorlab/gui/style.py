"""Light and dark palettes, and the matching pyqtgraph colours, readable in both.

``apply_theme(app, "light" | "dark")`` sets the Fusion style, a complete QPalette (including
the disabled group, tooltips and links) and pyqtgraph's default background/foreground; plots
created afterwards follow it, existing ones are restyled by ``style_plot``.

Text colours come from the palette only, never from a widget style sheet: Qt does not pass a
new application palette on to a widget that has its own style sheet while it is hidden, so a
label in a back dock tab would keep the old theme's text colour. A label that must stand out
(a stale number, an error line) gets a ``Tone`` (``set_tone``): a palette colour that
``apply_theme`` sets again on every toned widget, shown or hidden.

``apply_theme`` finds the toned widgets in its own register, never by walking
``QApplication.allWidgets()``: that walk wraps every Qt-internal child, and calling a wrapper
of a child Qt has since freed crashes the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import pyqtgraph as pg
import shiboken6
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget

THEMES = ("light", "dark")
TONE_PROPERTY = "xnorlab_tone"  # the Tone a widget's text is drawn in (Qt dynamic property)


class Tone(str, Enum):
    """How a label's text stands out from ordinary text."""

    NORMAL = "normal"  # the palette's text colour
    MUTED = "muted"  # a number that describes an older state, secondary text
    ERROR = "error"  # an error line on the window background


@dataclass(frozen=True)
class Theme:
    """Colours of one theme (hex strings)."""

    name: str
    window: str
    base: str
    alternate: str
    text: str
    muted: str
    button: str
    highlight: str
    highlight_text: str
    link: str
    plot_bg: str
    plot_fg: str
    float_colour: str  # float data / float mode
    bwn_colour: str
    xnor_colour: str
    accent: str  # overlays: alpha lines, thresholds
    error_bg: str
    error_text: str
    error_fg: str  # an error line on the window background


LIGHT = Theme(
    name="light", window="#f3f3f3", base="#ffffff", alternate="#f5f7fa", text="#1b1b1b",
    muted="#6b6b6b", button="#e8e8e8", highlight="#2f6fd1", highlight_text="#ffffff",
    link="#1a5fb4", plot_bg="#ffffff", plot_fg="#303030", float_colour="#3b74c4",
    bwn_colour="#d98b18", xnor_colour="#c0392b", accent="#1e8449", error_bg="#fde8e6",
    error_text="#8a1c12", error_fg="#c0392b",
)  # fmt: skip
DARK = Theme(
    name="dark", window="#2b2b2e", base="#1f1f22", alternate="#27272b", text="#e6e6e6",
    muted="#a0a0a0", button="#3a3a3e", highlight="#2f65c0", highlight_text="#ffffff",
    link="#7fb0ff", plot_bg="#1f1f22", plot_fg="#d8d8d8", float_colour="#6fa8ff",
    bwn_colour="#f0b45a", xnor_colour="#ff7b6b", accent="#5fd38d", error_bg="#5a1f1b",
    error_text="#ffd6d1", error_fg="#ff7b6b",
)  # fmt: skip

_current: Theme = LIGHT
_toned: list[QWidget] = []  # widgets created from Python: Qt's delete invalidates the wrapper


def theme(name: str | None = None) -> Theme:
    """The theme called ``name`` (the current one when ``None``)."""
    if name is None:
        return _current
    if name not in THEMES:
        raise ValueError(f"unknown theme {name!r} (expected one of: {', '.join(THEMES)})")
    return LIGHT if name == "light" else DARK


def palette(t: Theme) -> QPalette:
    """A full QPalette for theme ``t`` (active, inactive and disabled groups)."""
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: t.window, QPalette.ColorRole.WindowText: t.text,
        QPalette.ColorRole.Base: t.base, QPalette.ColorRole.AlternateBase: t.alternate,
        QPalette.ColorRole.Text: t.text, QPalette.ColorRole.Button: t.button,
        QPalette.ColorRole.ButtonText: t.text, QPalette.ColorRole.BrightText: "#ffffff",
        QPalette.ColorRole.Highlight: t.highlight,
        QPalette.ColorRole.HighlightedText: t.highlight_text,
        QPalette.ColorRole.ToolTipBase: t.base, QPalette.ColorRole.ToolTipText: t.text,
        QPalette.ColorRole.Link: t.link, QPalette.ColorRole.PlaceholderText: t.muted,
    }  # fmt: skip
    for role, colour in roles.items():
        pal.setColor(role, QColor(colour))
    for role in (
        QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText,
    ):  # fmt: skip
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(t.muted))
    return pal


def mode_colour(mode: str, t: Theme | None = None) -> str:
    """Colour of a layer mode ("float", "bwn", "xnor") in theme ``t``."""
    active = t or _current
    return {"float": active.float_colour, "bwn": active.bwn_colour}.get(
        str(mode), active.xnor_colour
    )


def tone_colour(tone: Tone, t: Theme | None = None) -> str | None:
    """The text colour of ``tone`` in theme ``t`` (``None``: the palette's own)."""
    active = t or _current
    return {Tone.NORMAL: None, Tone.MUTED: active.muted, Tone.ERROR: active.error_fg}[tone]


def _paint_tone(widget: QWidget, tone: Tone) -> None:
    pal = QPalette()  # no role set: every role comes from the parent / application
    colour = tone_colour(tone)
    if colour is not None:
        for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text):
            pal.setColor(role, QColor(colour))
    widget.setPalette(pal)


def set_tone(widget: QWidget, tone: Tone) -> None:
    """Draw ``widget``'s text in ``tone`` of the current theme (kept across theme switches)."""
    widget.setProperty(TONE_PROPERTY, tone.value)
    _paint_tone(widget, tone)
    if not any(known is widget for known in _toned):
        _toned[:] = [known for known in _toned if shiboken6.isValid(known)]
        _toned.append(widget)


def toned_widgets() -> list[QWidget]:
    """The live widgets ``set_tone`` has drawn in a tone."""
    return [widget for widget in _toned if shiboken6.isValid(widget)]


def tone_of(widget: QWidget) -> Tone:
    """The ``Tone`` ``set_tone`` gave ``widget`` (``NORMAL`` when none)."""
    value = widget.property(TONE_PROPERTY)
    return Tone(value) if isinstance(value, str) and value else Tone.NORMAL


def apply_theme(app: QApplication, name: str) -> Theme:
    """Switch the whole application to theme ``name``; returns it."""
    global _current
    _current = theme(name)
    app.setStyle("Fusion")
    app.setPalette(palette(_current))
    pg.setConfigOptions(
        background=_current.plot_bg, foreground=_current.plot_fg, antialias=True,
        imageAxisOrder="row-major",
    )  # fmt: skip
    for widget in toned_widgets():
        _paint_tone(widget, tone_of(widget))
    return _current


def style_plot(plot: pg.PlotItem | pg.PlotWidget, t: Theme | None = None) -> None:
    """Restyle an existing plot's axes and title for theme ``t``."""
    active = t or _current
    item = plot.getPlotItem() if isinstance(plot, pg.PlotWidget) else plot
    for side in ("left", "bottom"):
        axis = item.getAxis(side)
        axis.setPen(pg.mkPen(active.plot_fg))
        axis.setTextPen(pg.mkPen(active.plot_fg))
    title = item.titleLabel
    if title.text:
        title.setText(title.text, color=active.plot_fg)
