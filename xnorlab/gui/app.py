"""Application entry: ``run_app(model_spec=None, screenshot=None) -> int`` (the CLI calls it).

Creates the QApplication, installs a global exception hook (an uncaught exception is logged
with its traceback and shown to the user as one line in the window, never as a traceback
dialog), opens the main window on the requested model (default: the last model of the
previous session, else ``demo:lenet``, each with its validation data) and runs the event loop.
The screenshot mode never restores the last model: without MODEL it shows ``demo:lenet``.

``screenshot``: wait until the model is open and every worker (table, views, panels) is idle,
save a PNG of the main window, and exit (0 on success, 1 on timeout or failure). A model that
cannot be opened ends it at once with the load error on stderr (exit code 1).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QCoreApplication, QThreadPool, QTimer
from PySide6.QtWidgets import QApplication

from xnorlab.common.errors import XnorlabError
from xnorlab.gui.main_window import MainWindow
from xnorlab.gui.panels.open_dialogs import opener_for
from xnorlab.gui.workers import error_message

DEFAULT_MODEL = "demo:lenet"
SCREENSHOT_TIMEOUT_S = 180.0
SCREENSHOT_SIZE = (1600, 1000)
POLL_MS = 100
SHUTDOWN_WAIT_MS = 10_000

log = logging.getLogger("xnorlab")


def one_line(exc: BaseException) -> str:
    """The user-facing line for an unexpected exception."""
    return f"internal error: {error_message(exc)} (details in the log)"


class ExceptionHook:
    """``sys.excepthook`` / ``threading.excepthook``: log, then show one line in the window."""

    def __init__(self) -> None:
        self.window: MainWindow | None = None
        self.messages: list[str] = []

    def __call__(
        self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        log.error("uncaught exception:\n%s", "".join(traceback.format_exception(kind, exc, tb)))
        message = str(exc) if isinstance(exc, XnorlabError) else one_line(exc)
        self.messages.append(message)
        if self.window is not None and threading.current_thread() is threading.main_thread():
            self.window.show_error(message)
        else:
            print(f"xnorlab: {message}", file=sys.stderr)

    def thread_hook(self, args: threading.ExceptHookArgs) -> None:
        self(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)


def install_exception_hook() -> ExceptionHook:
    """Route uncaught exceptions (GUI thread and Python threads) to ``ExceptionHook``."""
    hook = ExceptionHook()
    sys.excepthook = hook
    threading.excepthook = hook.thread_hook
    return hook


class ScreenshotWaiter:
    """Polls the window until it is ready, then saves the PNG and quits the application."""

    def __init__(self, window: MainWindow, path: str, app: QCoreApplication) -> None:
        self.window, self.path, self.app = window, Path(path), app
        self.opener = opener_for(window.session, window)
        self.opener.ask = self.refuse_trust  # never a modal question
        self.started = time.monotonic()
        self.exit_code = 1
        self.calm_polls = 0
        self.timer = QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    def ready(self) -> bool:
        window, session = self.window, self.window.session
        if session.loaded is None or window.busy():
            return False
        return window.views.current is not None or session.selected is None

    def load_failure(self) -> str:
        """The load error when no model is open and none is being loaded ("" otherwise)."""
        window = self.window
        if window.session.loaded is not None or window.runner.active or self.opener.runner.active:
            return ""
        return self.opener.failed[-1] if self.opener.failed else ""

    def poll(self) -> None:
        failure = self.load_failure()
        if failure:
            print(f"xnorlab: screenshot: the model did not open: {failure}", file=sys.stderr)
            self.quit(exit_code=1)
            return
        self.calm_polls = self.calm_polls + 1 if self.ready() else 0
        timed_out = time.monotonic() - self.started > SCREENSHOT_TIMEOUT_S
        if self.calm_polls < 3 and not timed_out:
            return  # ready for 3 polls in a row: nothing is about to start again
        self.timer.stop()
        if timed_out:
            print("xnorlab: screenshot: the window did not settle in time", file=sys.stderr)
        self.save(ok=not timed_out)

    def refuse_trust(self, _parent: object, spec: str) -> bool:
        """The trust question in screenshot mode: never asked; fail with exit code 1."""
        print(
            f"xnorlab: screenshot: {spec} holds Python objects that could run code when loaded; "
            "the screenshot mode never asks: open it in the app (which asks) or save its "
            "weights as safetensors",
            file=sys.stderr,
        )
        self.quit(exit_code=1)
        return False

    def quit(self, exit_code: int) -> None:
        """Stop polling, close the window and leave the event loop with ``exit_code``."""
        self.timer.stop()
        self.exit_code = exit_code
        self.window.close()
        self.app.quit()

    def save(self, ok: bool) -> None:
        image = self.window.grab()
        if image.isNull() or not image.save(str(self.path)):
            print(f"xnorlab: cannot write screenshot {self.path}", file=sys.stderr)
            self.exit_code = 1
        else:
            print(f"xnorlab: screenshot saved to {self.path}", file=sys.stderr)
            self.exit_code = 0 if ok else 1
        self.window.close()
        self.app.quit()


def _application() -> QCoreApplication:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("xnorlab")
    app.setApplicationName("xnorlab")
    return app


def run_app(model_spec: str | None = None, screenshot: str | None = None) -> int:
    """Open the desktop app (see the module docstring); returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    hook = install_exception_hook()
    app = _application()
    window = MainWindow()
    hook.window = window
    if screenshot:
        window.remembers = False  # a screenshot leaves the user's last model and layout alone
        window.resize(*SCREENSHOT_SIZE)
    window.show()
    waiter = ScreenshotWaiter(window, screenshot, app) if screenshot else None
    window.open_initial(model_spec, DEFAULT_MODEL, restore_last=not screenshot)
    code = int(app.exec())
    QThreadPool.globalInstance().waitForDone(SHUTDOWN_WAIT_MS)  # workers were asked to stop
    return waiter.exit_code if waiter is not None else code
