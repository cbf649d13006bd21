"""TaskRunner/Task: results, errors, progress and cancel arrive on the GUI thread, stale dropped."""

from __future__ import annotations

import threading
import time
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, ProgressFn, check_cancel
from xnorlab.gui.workers import TaskRunner, error_message


def slow_sum(n: int, progress: ProgressFn, should_cancel: CancelFn, step_s: float = 0.01) -> int:
    total = 0
    for i in range(n):
        check_cancel(should_cancel, "sum")
        time.sleep(step_s)
        total += i
        progress((i + 1) / n, f"step {i + 1}")
    return total


def test_result_and_progress_arrive_on_gui_thread(qtbot: QtBot) -> None:
    runner = TaskRunner()
    gui_thread = threading.get_ident()
    seen: dict[str, Any] = {"progress": [], "threads": set()}

    def on_progress(fraction: float, message: str, payload: object) -> None:
        seen["progress"].append(fraction)
        seen["threads"].add(threading.get_ident())

    def on_result(value: int) -> None:
        seen["result"] = value
        seen["threads"].add(threading.get_ident())

    task = runner.start(slow_sum, 10, on_progress=on_progress, on_result=on_result)
    with qtbot.waitSignal(task.finished, timeout=5000):
        pass
    assert seen["result"] == sum(range(10))
    assert seen["progress"][-1] == 1.0
    assert seen["threads"] == {gui_thread}
    assert task.worker_thread_id is not None and task.worker_thread_id != gui_thread


def test_gui_thread_is_not_blocked(qtbot: QtBot) -> None:
    runner = TaskRunner()
    started = time.monotonic()
    task = runner.start(slow_sum, 30, step_s=0.02)
    assert time.monotonic() - started < 0.1  # start() returns at once
    assert not task.done
    qtbot.waitUntil(lambda: task.done, timeout=5000)


def test_errors_become_one_line_messages(qtbot: QtBot) -> None:
    runner = TaskRunner()
    messages: list[str] = []

    def user_error() -> None:
        raise XnorlabError("the file is corrupt")

    def bug() -> None:
        raise ZeroDivisionError("division by zero\nmore lines")

    for func in (user_error, bug):
        task = runner.start(func, on_error=messages.append)
        qtbot.waitUntil(lambda task=task: task.done, timeout=5000)
    assert messages == ["the file is corrupt", "bug failed: ZeroDivisionError: division by zero"]
    assert error_message(KeyError()) == "KeyError"


def test_cancel_stops_the_function(qtbot: QtBot) -> None:
    runner = TaskRunner()
    outcome: list[str] = []
    task = runner.start(
        slow_sum, 500, on_result=lambda v: outcome.append("result"),
        on_cancelled=lambda: outcome.append("cancelled"),
    )  # fmt: skip
    qtbot.wait(50)
    task.cancel()
    started = time.monotonic()
    qtbot.waitUntil(lambda: task.done, timeout=5000)
    assert time.monotonic() - started < 1.0
    assert outcome == ["cancelled"]


def test_a_result_that_arrives_after_cancel_is_dropped(qtbot: QtBot) -> None:
    """The function finished before cancel(), its result still queued for the GUI thread:
    the click on Cancel wins, as a quick task on tiny data would otherwise show its result."""
    runner = TaskRunner()
    outcome: list[str] = []
    finished = threading.Event()

    def quick() -> int:
        finished.set()
        return 1

    task = runner.start(quick, on_result=lambda v: outcome.append("result"),
                        on_cancelled=lambda: outcome.append("cancelled"))  # fmt: skip
    assert finished.wait(5)
    time.sleep(0.05)  # its result is queued now; no event has been processed since start()
    task.cancel()
    qtbot.waitUntil(lambda: task.done, timeout=5000)
    assert outcome == ["cancelled"]


def test_newer_task_with_same_key_drops_the_older_result(qtbot: QtBot) -> None:
    runner = TaskRunner()
    results: list[int] = []
    first = runner.start(slow_sum, 50, key="view", on_result=results.append)
    second = runner.start(slow_sum, 3, key="view", on_result=results.append)
    qtbot.waitUntil(lambda: first.done and second.done, timeout=5000)
    assert results == [3]
    assert runner.active == 0 and runner.running("view") is None


def test_deleting_the_runner_mutes_its_running_tasks(qtbot: QtBot) -> None:
    owner = QObject()
    runner = TaskRunner(owner)
    delivered: list[str] = []
    task = runner.start(
        slow_sum, 20, on_result=lambda v: delivered.append("result"),
        on_finished=lambda: delivered.append("finished"),
    )  # fmt: skip
    owner.deleteLater()  # like a closed window: the runner goes with it
    QApplication.processEvents()
    qtbot.waitUntil(lambda: task.done, timeout=5000)
    assert task.orphaned and delivered == []
