"""Run Qt-free core functions off the GUI thread and hand their results back on it.

The model is Orange's ``ConcurrentWidgetMixin`` and napari's thread workers: a core function
that takes ``progress(fraction, message="", payload=None)`` and ``should_cancel()`` keyword callables
runs on a ``QThreadPool``; its progress, result or error arrive as Qt signals of a ``Task``
handle, always on the GUI thread, in order (progress..., then result | error | cancelled,
then finished).

Usage::

    runner = TaskRunner(parent=widget)
    task = runner.start(core_function, arg, on_result=show, on_error=status.showMessage,
                        on_progress=bar.update, key="layer-view")

``key``: starting a task with the key of a running one cancels the older task and drops its
results (stale results never reach the view). Exceptions become one-line messages
(``XnorlabError`` as is; anything else with its type, and the traceback goes to the log),
never a dialog. ``xnorlab.common.tasks.Cancelled`` (or any result after ``cancel()``) counts as
cancelled.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal, Slot

from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import Cancelled
from xnorlab.gui._refcount_guard import immortalize_singletons

# PySide6 6.12 on Python 3.11 steals a reference to True on every Python-side emit (see the
# guard's docstring); workers emit a lot, so the guard must be active whenever they are used.
immortalize_singletons()

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.05  # at most ~20 progress updates per second reach the GUI


def error_message(exc: BaseException, what: str = "") -> str:
    """One line for the user: ``XnorlabError`` text as is, others prefixed with their type."""
    if isinstance(exc, XnorlabError):
        return str(exc)
    prefix = f"{what} failed: " if what else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{prefix}{type(exc).__name__}: {text}" if text else f"{prefix}{type(exc).__name__}"


def _accepts(func: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class _Relay(QObject):
    """Emitted from the worker thread; delivered (queued) to the Task on the GUI thread."""

    progress = Signal(float, str, object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    done = Signal()


class _Runnable(QRunnable):
    def __init__(self, job: Callable[[], None]) -> None:
        super().__init__()
        self._job = job
        self.setAutoDelete(True)

    def run(self) -> None:
        self._job()


class Task(QObject):
    """Handle of one background job; its signals fire on the GUI thread."""

    progressed = Signal(float, str, object)
    result = Signal(object)
    error = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        name: str = "", parent: QObject | None = None,
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self.func, self.args, self.kwargs = func, args, kwargs
        self.name = name or getattr(func, "__name__", "task")
        self.worker_thread_id: int | None = None
        self.superseded = False
        self.orphaned = False  # the runner that started it is gone: deliver nothing at all
        self.done = False
        self._cancel = threading.Event()
        self._last_progress = 0.0
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        self._relay.succeeded.connect(self._on_result)
        self._relay.failed.connect(self._on_error)
        self._relay.cancelled.connect(self._on_cancelled)
        self._relay.done.connect(self._on_done)

    # ---------------------------------------------------------------- worker thread side
    def should_cancel(self) -> bool:
        """True once ``cancel()`` was called (polled by the core function)."""
        return self._cancel.is_set()

    def _progress(self, fraction: float, message: str = "", payload: Any = None, /) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_progress < PROGRESS_INTERVAL_S:
            return
        self._last_progress = now
        self._emit("progress", float(fraction), str(message), payload)

    def run_here(self) -> None:
        """Run the function in the calling thread, reporting through the relay signals."""
        self.worker_thread_id = threading.get_ident()
        kwargs = dict(self.kwargs)
        if _accepts(self.func, "progress"):
            kwargs.setdefault("progress", self._progress)
        if _accepts(self.func, "should_cancel"):
            kwargs.setdefault("should_cancel", self.should_cancel)
        try:
            value = self.func(*self.args, **kwargs)
        except Cancelled:
            self._emit("cancelled")
        except Exception as exc:  # every error becomes a message, never a dialog
            if not isinstance(exc, XnorlabError):
                log.error("task %s failed", self.name, exc_info=exc)
            self._emit("failed", error_message(exc, self.name))
        else:
            if self.should_cancel():
                self._emit("cancelled")
            else:
                self._emit("succeeded", value)
        finally:
            self._emit("done")

    def _emit(self, name: str, *args: Any) -> None:
        """Emit a relay signal; if Qt already deleted the relay (application shutting down),
        there is nobody left to tell, so the call is dropped instead of raising."""
        try:
            getattr(self._relay, name).emit(*args)
        except RuntimeError:
            self._cancel.set()

    # ---------------------------------------------------------------- GUI thread side
    def cancel(self) -> None:
        """Ask the function to stop; its result (if any) will be dropped."""
        self._cancel.set()

    def supersede(self) -> None:
        """Cancel and mute: a newer task replaces this one, nothing of it reaches the view."""
        self.superseded = True
        self.cancel()

    @Slot(float, str, object)
    def _on_progress(self, fraction: float, message: str, payload: object) -> None:
        if not self.superseded and not self._cancel.is_set():
            self.progressed.emit(fraction, message, payload)

    @Slot(object)
    def _on_result(self, value: object) -> None:
        if self.superseded:
            return
        # A result the worker sent before cancel() but that reaches the GUI thread after it is
        # dropped too: the user asked to stop, so nothing more may land.
        if self._cancel.is_set():
            self.cancelled.emit()
        else:
            self.result.emit(value)

    @Slot(str)
    def _on_error(self, message: str) -> None:
        if not self.superseded:
            self.error.emit(message)

    @Slot()
    def _on_cancelled(self) -> None:
        if not self.superseded:
            self.cancelled.emit()

    def orphan(self) -> None:
        """Mute everything, ``finished`` included (its runner and receivers were deleted)."""
        self.orphaned = True
        self.supersede()

    @Slot()
    def _on_done(self) -> None:
        self.done = True
        if not self.orphaned:
            self.finished.emit()


def _orphan_all(tasks: set[Task]) -> None:
    for task in list(tasks):
        task.orphan()


class TaskRunner(QObject):
    """Starts ``Task``s on a thread pool and keeps them alive until they finish."""

    idle = Signal()  # the last running task finished

    def __init__(self, parent: QObject | None = None, pool: QThreadPool | None = None) -> None:
        super().__init__(parent)
        self.pool = pool or QThreadPool.globalInstance()
        self._tasks: set[Task] = set()
        self._latest: dict[str, Task] = {}
        self._graveyard: list[Task] = []  # finished tasks, released at the next start()
        tasks = self._tasks  # the closure must not hold self: it runs while self is destroyed
        self.destroyed.connect(lambda *_: _orphan_all(tasks))

    def start(
        self, func: Callable[..., Any], *args: Any, key: str | None = None,
        on_result: Callable[[Any], Any] | None = None,
        on_error: Callable[[str], Any] | None = None,
        on_progress: Callable[[float, str, object], Any] | None = None,
        on_cancelled: Callable[[], Any] | None = None,
        on_finished: Callable[[], Any] | None = None, **kwargs: Any,
    ) -> Task:  # fmt: skip
        """Run ``func(*args, **kwargs)`` in the pool; callbacks run on the GUI thread."""
        if key is not None and key in self._latest:
            self._latest[key].supersede()
        self._graveyard.clear()  # tasks finished earlier are no longer inside their own slots
        task = Task(func, args, kwargs)
        task.finished.connect(lambda: self._forget(task, key))  # first: on_finished sees it gone
        for signal, slot in (
            (task.result, on_result), (task.error, on_error), (task.progressed, on_progress),
            (task.cancelled, on_cancelled), (task.finished, on_finished),
        ):  # fmt: skip
            if slot is not None:
                signal.connect(slot)
        self._tasks.add(task)
        if key is not None:
            self._latest[key] = task
        self.pool.start(_Runnable(task.run_here))
        return task

    def _forget(self, task: Task, key: str | None) -> None:
        self._tasks.discard(task)
        if key is not None and self._latest.get(key) is task:
            del self._latest[key]
        self._graveyard.append(task)  # not dropped here: we are inside the task's own signal
        if not self._tasks:
            QTimer.singleShot(0, self, self._emit_idle)  # dropped if the runner is deleted

    def _emit_idle(self) -> None:
        if not self._tasks:
            self.idle.emit()

    @property
    def active(self) -> int:
        """Number of tasks not finished yet (as seen on the GUI thread)."""
        return len(self._tasks)

    def running(self, key: str) -> Task | None:
        """The latest unfinished task started with ``key``."""
        return self._latest.get(key)

    def cancel_all(self) -> None:
        """Ask every running task to stop and mute them."""
        for task in list(self._tasks):
            task.supersede()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel everything and wait (blocking) for the pool; for window close and tests."""
        self.cancel_all()
        return bool(self.pool.waitForDone(timeout_ms))
