"""Measure how long the layer views take to show a mode toggle (a development tool).

``python scripts/toggle_timing.py MODEL [--data SPEC] [--layer INDEX] [--toggles N] [--panels]``
opens the real main window, toggles one layer xnor -> bwn -> float -> ... and prints, per
toggle, the time from the session's change to the redrawn views
(``LayerViews.last_update_ms``) and the worker's compute time. Run it headless with
``QT_QPA_PLATFORM=offscreen`` or under ``xvfb-run``. Timings include everything that shares
the machine: say so when you quote them.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from xnorlab.gui.main_window import MainWindow

MODES = ("xnor", "bwn", "float")
POLL_MS = 20


class ToggleTimer:
    """Drives the window: waits until idle, toggles, records, repeats."""

    def __init__(self, window: MainWindow, args: argparse.Namespace) -> None:
        self.window, self.args = window, args
        self.step_index = -1
        self.data_requested = False
        self.shown_ms: list[float] = []
        self.compute_ms: list[float] = []

    def ready(self) -> bool:
        session = self.window.session
        if session.loaded is None:
            return False
        if self.args.data and not self.data_requested:
            self.data_requested = True
            self.window.load_dataset_async(self.args.data)
        wanted = self.args.data or session.loaded.default_data
        waiting_for_data = bool(wanted) and session.dataset_spec != wanted
        return not waiting_for_data and not self.window.views.busy()

    def step(self) -> None:
        if not self.ready():
            QTimer.singleShot(POLL_MS, self.window, self.step)
            return
        views, session = self.window.views, self.window.session
        if self.step_index >= 0 and views.current is not None:
            self.shown_ms.append(views.last_update_ms)
            self.compute_ms.append(1000 * views.current.elapsed_s)
        self.step_index += 1
        if self.step_index >= self.args.toggles:
            self.finish()
            return
        names = session.layer_names()
        target = names[self.args.layer if self.args.layer is not None else len(names) // 2]
        session.select(target)
        session.set_mode(target, MODES[self.step_index % len(MODES)])
        QTimer.singleShot(POLL_MS, self.window, self.step)

    def finish(self) -> None:
        views = self.window.views
        samples = views.current.sample_count if views.current is not None else 0
        print(
            f"{self.window.session.model_name}: layer {self.window.session.selected}, "
            f"{samples} samples, panels {'on' if self.args.panels else 'off'}\n"
            f"  toggle -> views shown (ms): {[round(t) for t in self.shown_ms]}\n"
            f"  median shown {statistics.median(self.shown_ms):.0f} ms, median compute "
            f"{statistics.median(self.compute_ms):.0f} ms"
        )
        self.window.close()
        QApplication.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/toggle_timing.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model", help="model spec, e.g. demo:lenet or resnet18")
    parser.add_argument("--data", help="dataset spec (default: the model's default data)")
    parser.add_argument("--layer", type=int, help="layer index (default: the middle one)")
    parser.add_argument("--toggles", type=int, default=9, help="number of toggles (default 9)")
    parser.add_argument("--panels", action="store_true", help="dock the metrics/... panels too")
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow(panels=args.panels)
    window.resize(1600, 1000)
    window.show()
    window.open_model_async(args.model)
    timer = ToggleTimer(window, args)
    QTimer.singleShot(POLL_MS, window, timer.step)
    app.exec()
    return 0 if timer.shown_ms else 1


if __name__ == "__main__":
    sys.exit(main())
