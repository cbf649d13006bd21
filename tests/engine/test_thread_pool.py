"""The engine's two thread runtimes: torch's OpenMP team (the default, shared with torch through
one libgomp) and the engine's own pool (a forked child's, and the user's choice). Both give
the one-thread bits; a bad choice is one clear error that changes nothing."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from xnorlab import engine
from xnorlab.engine import KernelConfigError, ThreadPool

pytestmark = pytest.mark.skipif(
    engine.info()["backend"] != "native", reason="native engine not in use"
)


def _in_subprocess(code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_openmp_is_the_default_and_info_names_the_pool() -> None:
    code = "import xnorlab.engine as k; print(k.info()['thread_pool'], k.get_thread_pool())"
    env = {k: v for k, v in os.environ.items() if k != "XNORLAB_THREAD_POOL"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    assert done.stdout.strip() == "openmp ThreadPool.OPENMP"
    assert _in_subprocess(code, XNORLAB_THREAD_POOL="own") == "own ThreadPool.OWN"


def test_a_bad_pool_in_the_environment_is_a_clear_error() -> None:
    code = (
        "import xnorlab.engine as k\n"
        "try:\n    k.info()\nexcept k.KernelConfigError as e:\n    print('ERR', e)"
    )
    out = _in_subprocess(code, XNORLAB_THREAD_POOL="tbb")
    assert out == "ERR XNORLAB_THREAD_POOL must be one of openmp, own, got 'tbb'"


@pytest.mark.usefixtures("restore_engine_threads")
@pytest.mark.parametrize("bad", ["tbb", "", None, 2, ThreadPool])
def test_a_bad_pool_is_refused_and_the_pool_kept(bad: object) -> None:
    engine.set_thread_pool(ThreadPool.OWN)
    with pytest.raises(KernelConfigError, match="must be one of openmp, own"):
        engine.set_thread_pool(bad)  # type: ignore[arg-type]
    assert engine.get_thread_pool() is ThreadPool.OWN


@pytest.mark.usefixtures("restore_engine_threads")
def test_pools_switch_by_member_or_value() -> None:
    engine.set_thread_pool("own")
    assert engine.get_thread_pool() is ThreadPool.OWN and engine.info()["thread_pool"] == "own"
    engine.set_thread_pool(ThreadPool.OPENMP)
    assert engine.get_thread_pool() is ThreadPool.OPENMP


def test_the_engine_and_torch_load_one_openmp_runtime() -> None:
    """One libgomp.so.1 in the process, torch's: the engine's regions run on torch's team, not
    a second one competing with it for the cores. (Other wheels bundle renamed copies, e.g.
    scikit-learn's libgomp-<hash>.so; nothing of ours or torch's links those.)"""
    engine.info()
    torch.nn.functional.conv2d(torch.randn(1, 8, 32, 32), torch.randn(8, 8, 3, 3))
    maps = Path("/proc/self/maps").read_text().splitlines()
    paths = {Path(line.split()[-1]) for line in maps if line.rstrip().endswith("/libgomp.so.1")}
    torch_lib = Path(torch.__file__).parent / "lib"
    assert [p.parent.resolve() for p in paths] == [torch_lib.resolve()], paths


@pytest.mark.usefixtures("restore_engine_threads")
@pytest.mark.parametrize("pool", list(ThreadPool), ids=lambda p: p.value)
def test_both_pools_give_the_one_thread_bits(pool: ThreadPool) -> None:
    x = torch.randn(1, 64, 56, 56)
    weight = engine.pack_conv2d_weight(torch.randn(64, 64, 3, 3))
    engine.set_threads(1)
    expected = engine.xnor_conv2d(x, weight, padding=1)
    engine.set_thread_pool(pool)
    engine.set_threads(2)
    for _ in range(3):  # right after torch's own region too: its team is still awake
        torch.nn.functional.conv2d(x, torch.randn(64, 64, 3, 3), padding=1)
        assert torch.equal(engine.xnor_conv2d(x, weight, padding=1), expected)


@pytest.mark.usefixtures("restore_engine_threads")
@pytest.mark.parametrize("pool", list(ThreadPool), ids=lambda p: p.value)
def test_a_region_place_keeps_its_thread_from_region_to_region(pool: ThreadPool) -> None:
    """The phased conv splits each phase by place, so a thread reads what it wrote in the
    call before only if place 0 is always the caller and every other place one thread."""
    native = engine._backend.native_module()
    assert native is not None
    engine.set_threads(2)
    engine.set_thread_pool(pool)
    regions = native.region_places(200)
    caller = threading.get_native_id()
    thread_of: dict[int, set[int]] = {}
    for region in regions:
        assert len(region) == 2
        for place, tid in region:
            thread_of.setdefault(place, set()).add(tid)
    assert thread_of[0] == {caller}
    assert set(thread_of) <= {0, 1}
    assert all(len(tids) == 1 for tids in thread_of.values()), thread_of
    # Each task waits briefly for the other to start, so the worker takes part in most regions.
    joined = [region for region in regions if sorted(place for place, _ in region) == [0, 1]]
    assert len(joined) > len(regions) // 2
    with pytest.raises(ValueError, match=r"regions must be in 1\.\.10000, got 0"):
        native.region_places(0)


def _child_conv(queue: multiprocessing.Queue, x: torch.Tensor, weight: torch.Tensor) -> None:
    torch.set_num_threads(1)  # torch's own ops would wait for the parent's team (as in its docs)
    engine.set_threads(2)
    packed = engine.pack_conv2d_weight(weight)
    out = engine.xnor_conv2d(x, packed, padding=1)
    try:
        engine.set_thread_pool(ThreadPool.OPENMP)
        refused = ""
    except KernelConfigError as exc:
        refused = str(exc)
    queue.put((str(engine.get_thread_pool()), out.numpy().tobytes(), refused))


@pytest.mark.usefixtures("restore_engine_threads")
def test_a_forked_child_runs_on_the_engines_own_pool() -> None:
    """libgomp's team does not survive fork(): a region on it in the child waits forever for
    the parent's workers (torch's own ops too, unless the child sets one thread, as torch's
    DataLoader workers do). The child's engine switches to its own pool: two threads, the
    same bits, no hang; asking it for OpenMP there is refused."""
    x, weight = torch.randn(1, 64, 56, 56), torch.randn(64, 64, 3, 3)
    packed = engine.pack_conv2d_weight(weight)
    engine.set_threads(2)
    engine.set_thread_pool(ThreadPool.OWN)  # its workers now sleep on its condition variable
    expected = engine.xnor_conv2d(x, packed, padding=1)
    time.sleep(0.05)  # past their spin: asleep when the process forks
    engine.set_thread_pool(ThreadPool.OPENMP)
    assert torch.equal(engine.xnor_conv2d(x, packed, padding=1), expected)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_conv, args=(queue, x, weight))
    child.start()
    try:
        pool, data, refused = queue.get(timeout=60)
        child.join(timeout=60)
    finally:
        if child.is_alive():  # a hung child must fail this test, not hang the suite
            child.kill()
    assert child.exitcode == 0
    assert pool == "ThreadPool.OWN"
    assert refused.startswith("this process is a forked child: an OpenMP team does not survive")
    assert data == expected.numpy().tobytes()
    assert engine.get_thread_pool() is ThreadPool.OPENMP  # the parent's is unchanged
