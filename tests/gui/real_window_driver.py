"""Drive the real app window on an X server (run by test_real_window.py in a subprocess).

Usage: ``python real_window_driver.py OUT_DIR`` with ``DISPLAY`` set and ``QT_QPA_PLATFORM=xcb``.
Opens ``demo:lenet`` as the app does (with its default data), toggles presets, switches the
theme twice (with the metrics tab hidden at each switch; ``dark.png``, ``light.png``), saves
``lenet.png``, opens
``resnet18``, saves ``second.png``, and writes ``result.json``: what was checked and every
problem found (metric text that does not stand out from its background in the grabbed pixels
or in the palette, labels and buttons in view smaller than their size hint, captions wider than
their room, a table column behind a scroll bar).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel, QWidget
from wcag import contrast, luminance

from xnorlab.gui.app import DEFAULT_MODEL, SCREENSHOT_SIZE, install_exception_hook
from xnorlab.gui.main_window import MainWindow
from xnorlab.gui.style import Tone, tone_of

SECOND_MODEL = "resnet18"
IDLE_TIMEOUT_S = 240.0
TEXT_CONTRAST = 4.5  # palette colours: WCAG AA for normal text
PIXEL_CONTRAST = 3.0  # grabbed pixels: anti-aliasing softens the strongest text pixel a little


def wait_idle(app: QApplication, window: MainWindow, until: str = "") -> float:
    """Process events until a model (named ``until``, if given) is open and nothing is busy
    for three polls in a row; returns the seconds waited."""
    started = time.monotonic()
    calm = 0
    while calm < 3:
        app.processEvents()
        time.sleep(0.05)
        session = window.session
        ready = session.loaded is not None and not window.busy()
        ready = ready and (not until or session.model_name == until)
        calm = calm + 1 if ready else 0
        if time.monotonic() - started > IDLE_TIMEOUT_S:
            raise SystemExit(f"the window did not settle within {IDLE_TIMEOUT_S:.0f} s")
    return time.monotonic() - started


def metric_labels(window: MainWindow) -> dict[str, QLabel]:
    metrics = window.panels["metrics"]
    return {
        "float accuracy": metrics.float_acc, "current accuracy": metrics.current_acc,
        "accuracy change": metrics.acc_drop, "float memory": metrics.float_mem,
        "packed memory": metrics.packed_mem, "memory ratio": metrics.mem_ratio,
        "float latency": metrics.float_lat, "current latency": metrics.current_lat,
        "speed-up": metrics.speedup,
    }  # fmt: skip


def pixel_contrast(shot: QImage, window: MainWindow, label: QLabel) -> float:
    """Contrast of a label's text in the grabbed window: the most common colour of its area is
    the background, the pixel farthest from it in luminance is the text."""
    top_left = label.mapTo(window, label.rect().topLeft())
    area = shot.copy(QRect(top_left, label.size()))
    pixels = [area.pixel(x, y) for x in range(area.width()) for y in range(area.height())]
    background = QColor.fromRgb(Counter(pixels).most_common(1)[0][0])
    text = max((QColor.fromRgb(p) for p in set(pixels)),
               key=lambda c: abs(luminance(c) - luminance(background)))  # fmt: skip
    return contrast(text, background)


def contrast_problems(app: QApplication, window: MainWindow, theme: str) -> list[str]:
    """Metric values whose text does not stand out (palette and grabbed pixels)."""
    window.docks["metrics"].raise_()
    app.processEvents()
    shot = window.grab().toImage()
    problems = []
    for name, label in metric_labels(window).items():
        if not label.isVisible() or label.text() in ("", "—"):
            problems.append(f"{theme}: {name} shows no value ({label.text()!r})")
            continue
        palette = label.palette()
        ratio = contrast(
            palette.color(label.foregroundRole()), palette.color(label.backgroundRole())
        )
        if ratio < TEXT_CONTRAST:
            problems.append(f"{theme}: {name} palette contrast {ratio:.1f}")
        seen = pixel_contrast(shot, window, label)
        if seen < PIXEL_CONTRAST:
            problems.append(f"{theme}: {name} pixel contrast {seen:.1f} (tone {tone_of(label)})")
    return problems


def in_view(widget: QWidget) -> bool:
    return widget.isVisible() and not widget.visibleRegion().isEmpty()


def cut_off(window: MainWindow) -> list[str]:
    """Labels and buttons in view that got less room than they ask for, captions wider than
    their room, table columns behind a scroll bar."""
    problems = []
    for widget in window.findChildren(QWidget):
        if not isinstance(widget, (QLabel, QAbstractButton)) or not in_view(widget):
            continue
        name = f"{type(widget).__name__} {widget.text()[:40]!r}"
        if isinstance(widget, QLabel) and widget.wordWrap():
            needed = widget.heightForWidth(widget.width())
            if needed > widget.height() + 1:
                problems.append(f"{name}: needs {needed} px of height, has {widget.height()}")
            continue
        hint = widget.sizeHint()
        if hint.width() > widget.width() + 1 or hint.height() > widget.height() + 1:
            problems.append(
                f"{name}: asks {hint.width()}x{hint.height()}, "
                f"has {widget.width()}x{widget.height()}"
            )
    problems += [f"caption cut: {text!r}" for text in window.views.cut_captions()]
    if window.table.view.horizontalScrollBar().maximum() > 0:
        problems.append("a table column is behind the horizontal scroll bar")
    return problems


def save(window: MainWindow, path: Path) -> None:
    if not window.grab().save(str(path)):
        raise SystemExit(f"cannot write {path}")


def main(out_dir: Path) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    hook = install_exception_hook()
    window = MainWindow()
    hook.window = window
    window.resize(*SCREENSHOT_SIZE)
    window.show()
    window.open_initial(None, DEFAULT_MODEL, restore_last=False)
    timings = {"open demo:lenet": wait_idle(app, window, DEFAULT_MODEL)}
    problems: list[str] = []
    actions = window.actions_by_name
    for name in ("paper", "all_xnor", "all_bwn", "undo", "undo"):  # back to the paper preset
        actions[name].trigger()
        app.processEvents()
    timings["presets"] = wait_idle(app, window)
    for theme in ("dark", "light"):  # Ctrl+Shift+T twice, the metrics tab hidden each time
        window.docks["training"].raise_()
        app.processEvents()
        actions["dark"].trigger()
        wait_idle(app, window)
        problems += contrast_problems(app, window, theme)
        save(window, out_dir / f"{theme}.png")
    problems += [f"lenet: {p}" for p in cut_off(window)]
    save(window, out_dir / "lenet.png")
    window.open_model_async(SECOND_MODEL)
    timings[f"open {SECOND_MODEL}"] = wait_idle(app, window, SECOND_MODEL)
    window.docks["metrics"].raise_()
    app.processEvents()
    problems += [f"{SECOND_MODEL}: {p}" for p in cut_off(window)]
    if window.panels["metrics"].current_acc.text() != "—":
        problems.append(f"{SECOND_MODEL} without data still shows an accuracy")
    save(window, out_dir / "second.png")
    result = {
        "size": [window.width(), window.height()],
        "platform": QApplication.platformName(),
        "seconds": {k: round(v, 1) for k, v in timings.items()},
        "errors": hook.messages,
        "problems": problems,
        "muted_after": [n for n, lb in metric_labels(window).items() if tone_of(lb) is Tone.MUTED],
    }
    (out_dir / "result.json").write_text(json.dumps(result, indent=2))
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
