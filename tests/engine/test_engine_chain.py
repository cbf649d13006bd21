"""``ConvChain``: prepared XNOR convs run as one engine call equal the same calls made one by
one, bit for bit, on every ISA and thread count; bad chains and bad inputs are refused at the
boundary with one clear error, and inputs the chain was not prepared for take the steps."""

from __future__ import annotations

import threading
import time
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xnorlab import engine
from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.engine import (
    ChainStep,
    ConvChain,
    KernelInputError,
    KernelTypeError,
    PreparedConv2d,
    Prologue,
    ThreadChooser,
)
from xnorlab.engine._backend import native_module

pytestmark = pytest.mark.skipif(
    engine.info()["backend"] != "native", reason="native engine not in use"
)

RELU = (0.0, float("inf"))


def residual_blocks(batch: int, channels: int, size: int, wide: int,
                    gen: torch.Generator) -> list[ChainStep]:  # fmt: skip
    """Two residual blocks: a plain one (its shortcut the chain input) and a downsampling one
    with a 1x1 stride-2 shortcut conv (slot 3) added to its second conv; the first conv has a
    prologue (a BatchNorm before it)."""
    shape = (batch, channels, size, size)
    prologue = Prologue(torch.rand(channels, generator=gen) + 0.5,
                        torch.randn(channels, generator=gen) * 0.2, (-1.0, 1.0))  # fmt: skip

    def packed(c_out: int, c_in: int, k: int) -> engine.PackedConv2dWeight:
        bias = torch.randn(c_out, generator=gen)
        return engine.pack_conv2d_weight(torch.randn(c_out, c_in, k, k, generator=gen), bias)

    a = PreparedConv2d(shape, packed(channels, channels, 3), 1, 1, clamp=RELU,
                       prologue=prologue)  # fmt: skip
    b = PreparedConv2d(shape, packed(channels, channels, 3), 1, 1, clamp=RELU)
    c = PreparedConv2d(shape, packed(wide, channels, 3), 2, 1, clamp=RELU)
    d = PreparedConv2d(shape, packed(wide, channels, 1), 2, 0)
    e = PreparedConv2d(tuple(c.out_shape), packed(wide, wide, 3), 1, 1, clamp=RELU)
    return [ChainStep(a), ChainStep(b, 1, 0), ChainStep(c, 2), ChainStep(d, 2),
            ChainStep(e, 3, 4)]  # fmt: skip


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    batch=st.integers(1, 2), channels=st.integers(1, 70), size=st.integers(2, 20),
    wide=st.integers(1, 90), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_a_chain_equals_its_steps_one_by_one(
    isa: str, threads: int, batch: int, channels: int, size: int, wide: int, seed: int
) -> None:  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    steps = residual_blocks(batch, channels, size, wide, gen)
    chain = ConvChain(steps)
    x = torch.randn(batch, channels, size, size, generator=gen)
    x = x.contiguous(memory_format=torch.channels_last)
    got = chain(x)
    expected = chain.run_steps(x)
    assert torch.equal(got, expected)
    assert got.shape == steps[-1].conv.out_shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(chain(x), expected)  # the value buffers are reused


def test_a_chain_of_resnet_sized_blocks_equals_its_steps(isa: str, threads: int) -> None:
    """Inputs of 2^15 floats and more: the calls split over threads (phased)."""
    gen = torch.Generator().manual_seed(8)
    chain = ConvChain(residual_blocks(1, 64, 56, 128, gen))
    x = torch.randn(1, 64, 56, 56, generator=gen).contiguous(memory_format=torch.channels_last)
    assert torch.equal(chain(x), chain.run_steps(x))


def test_the_steps_one_by_one_are_the_convs_of_the_facade() -> None:
    gen = torch.Generator().manual_seed(1)
    steps = residual_blocks(1, 8, 9, 16, gen)
    x = torch.randn(1, 8, 9, 9, generator=gen).contiguous(memory_format=torch.channels_last)
    values = [x]
    for step in steps:
        conv = step.conv
        residual = None if step.residual is None else values[step.residual]
        epilogue = engine.Epilogue(residual, conv.clamp)
        out = engine.xnor_conv2d(values[step.input], conv.weight, None, **conv.settings,
                                 epilogue=epilogue, prologue=conv.prologue)  # fmt: skip
        values.append(out)
    assert torch.equal(ConvChain(steps)(x), values[-1])


def test_inputs_the_chain_was_not_prepared_for_take_the_steps() -> None:
    gen = torch.Generator().manual_seed(2)
    chain = ConvChain(residual_blocks(2, 8, 9, 16, gen))
    x = torch.randn(2, 8, 9, 9, generator=gen)
    expected = chain(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(chain(x), expected)  # NCHW memory
    assert torch.equal(chain(x.double()).float(), expected)
    with pytest.raises(KernelInputError):
        chain(torch.randn(2, 5, 9, 9))  # the first step's weight takes 8 channels


def test_a_nan_input_warns_once_like_the_facade() -> None:
    gen = torch.Generator().manual_seed(3)
    chain = ConvChain(residual_blocks(1, 8, 9, 16, gen))
    x = torch.randn(1, 8, 9, 9, generator=gen).contiguous(memory_format=torch.channels_last)
    x[0, 0, 0, 0] = float("nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chain(x)
    assert [w.category for w in caught] == [NaNInputWarning]


def test_the_profile_has_one_record_per_step_adding_up_to_the_call() -> None:
    gen = torch.Generator().manual_seed(4)
    steps = residual_blocks(1, 16, 12, 32, gen)
    chain = ConvChain(steps)
    x = torch.randn(1, 16, 12, 12, generator=gen).contiguous(memory_format=torch.channels_last)
    chain(x)
    with engine.profile() as records:
        start = time.perf_counter()
        chain(x)
        wall = time.perf_counter() - start
    assert [r.out_shape for r in records] == [tuple(s.conv.out_shape) for s in steps]
    assert all(r.pack_s + r.popcount_s + r.scale_s <= r.total_s for r in records)
    assert 0 < sum(r.total_s for r in records) <= wall


def test_two_threads_running_one_chain_get_their_own_results() -> None:
    gen = torch.Generator().manual_seed(5)
    chain = ConvChain(residual_blocks(1, 16, 12, 32, gen))
    inputs = [
        torch.randn(1, 16, 12, 12, generator=gen).contiguous(memory_format=torch.channels_last)
        for _ in range(2)
    ]  # fmt: skip
    expected = [chain.run_steps(x) for x in inputs]
    results: dict[int, list[bool]] = {0: [], 1: []}

    def run(i: int) -> None:
        for _ in range(30):
            results[i].append(torch.equal(chain(inputs[i]), expected[i]))

    workers = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert results == {0: [True] * 30, 1: [True] * 30}


def test_bad_chains_are_refused_with_one_clear_error() -> None:
    gen = torch.Generator().manual_seed(6)
    a, b, c, _, e = residual_blocks(1, 8, 9, 16, gen)
    cases: list[tuple[list[ChainStep], type[Exception], str]] = [
        ([], KernelInputError, "at least one step"),
        ([ChainStep(a.conv, 1)], KernelInputError, "step 0 must read the chain input"),
        ([a, ChainStep(b.conv, 2)], KernelInputError, "earlier step's output (1..1)"),
        ([a, ChainStep(b.conv, 1, 3)], KernelInputError, "earlier step's output"),
        ([a, ChainStep(e.conv, 1)], KernelInputError, "does not have the shape"),
        ([a, ChainStep(c.conv, 1, 0)], KernelInputError, "residual (slot 0)"),
        ([a, ChainStep(b.conv, True)], KernelInputError, "got True"),  # type: ignore[arg-type]
        ([a, (b.conv, 1)], KernelTypeError, "ChainStep"),  # type: ignore[list-item]
    ]
    for steps, error, text in cases:
        with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
            ConvChain(steps)
    reader = PreparedConv2d(tuple(a.conv.out_shape), b.conv.weight, padding=1)
    a.conv.bits_for(reader)
    try:
        with pytest.raises(KernelInputError, match="packed"):
            ConvChain([a, ChainStep(reader, 1)])
    finally:
        a.conv.bits_for(None)


def test_the_native_chain_checks_its_steps_and_input() -> None:
    native = native_module()
    assert native is not None
    gen = torch.Generator().manual_seed(7)
    a, b, *_ = residual_blocks(1, 8, 9, 16, gen)
    item_a, item_b = a.conv.chain_item(0, None), b.conv.chain_item(1, 0)
    bad_items = [
        ([], ValueError, "at least one step"),
        ([item_a[:7]], ValueError, "8 items"),
        ([item_a, (*item_b[:2], 2.0, *item_b[3:])], TypeError, "must be an int"),
        ([item_a, (*item_b[:2], 5, *item_b[3:])], ValueError, "earlier step's output"),
        ([(*item_a[:2], 1, *item_a[3:])], ValueError, "step 0 must read"),
        ([item_a, (*item_b[:4], (2.0, 1.0), *item_b[5:])], ValueError, "lo <= hi"),
    ]
    for items, error, text in bad_items:
        with pytest.raises(error, match=text):
            native.ConvChain(items)
    chain = native.ConvChain([item_a, item_b])
    with pytest.raises(ValueError, match="shape"):
        chain.run(torch.zeros(1, 8, 10, 10).contiguous(memory_format=torch.channels_last).numpy())
    with pytest.raises(ValueError, match="dense"):
        chain.run(torch.zeros(1, 8, 9, 9).numpy())  # NCHW memory
    with pytest.raises(TypeError, match="float32"):
        chain.run(torch.zeros(1, 8, 9, 9, dtype=torch.float64).numpy())


def test_the_thread_chooser_tries_both_then_keeps_the_faster_and_probes_the_other() -> None:
    chooser = ThreadChooser(warmup=2, probe_every=5)
    assert chooser.choose(1) == 1  # one thread: nothing to choose
    seconds = {1: 2.0, 2: 1.0}  # two threads faster

    def run(count: int) -> list[int]:
        picks = []
        for _ in range(count):
            threads = chooser.choose(2)
            picks.append(threads)
            chooser.record(threads, seconds[threads])
        return picks

    picks = run(20)
    assert sorted(picks[:4]) == [1, 1, 2, 2]  # the warm-up samples both
    assert [i + 1 for i, t in enumerate(picks) if t == 1][2:] == [5, 10, 15, 20]  # probes
    seconds = {1: 1.0, 2: 3.0}  # the machine changes: two threads now slower
    picks = run(10)
    assert picks == [2, 2, 2, 2, 1, 2, 2, 2, 2, 1]  # two probes win: one thread from now
    assert run(9) == [1, 1, 1, 1, 2, 1, 1, 1, 1]  # and two threads are probed now
    seconds = {1: 1.0, 2: 0.9}
    assert run(1) == [2]  # the probe of run 40 wins once
    seconds = {1: 1.0, 2: 3.0}
    assert run(5) == [1, 1, 1, 1, 2]  # the next one loses: still one thread
    seconds = {1: 1.0, 2: 0.9}
    assert run(6) == [1, 1, 1, 1, 2, 1]  # one win again is not two in a row
    for _ in range(4):  # runs with the engine on one thread are not probes
        assert chooser.choose(1) == 1
        chooser.record(1, 0.1)
    assert run(5) == [1, 1, 1, 2, 2]  # the second winning probe in a row: two threads


def test_adaptive_threads_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = residual_blocks(1, 8, 9, 16, torch.Generator().manual_seed(10))
    assert ConvChain(steps).adaptive_threads
    monkeypatch.setenv("XNORLAB_ADAPTIVE_THREADS", "0")
    assert not ConvChain(steps).adaptive_threads
    assert ConvChain(steps, adaptive_threads=True).adaptive_threads


def test_a_chain_run_on_one_thread_equals_its_run_on_all(threads: int) -> None:
    gen = torch.Generator().manual_seed(9)
    chain = ConvChain(residual_blocks(1, 64, 56, 128, gen))
    x = torch.randn(1, 64, 56, 56, generator=gen).contiguous(memory_format=torch.channels_last)
    native = chain._native
    alone, pool = native.run(x.numpy(), True)[0], native.run(x.numpy(), False)[0]
    assert torch.equal(torch.from_numpy(alone), torch.from_numpy(pool))
    with engine.profile() as records:
        for _ in range(8):
            assert torch.equal(chain(x), torch.from_numpy(pool))
    used = {r.threads for r in records}
    assert used == ({1} if threads == 1 else {1, threads})  # the chooser's warm-up tried both
    fixed = ConvChain(residual_blocks(1, 8, 9, 16, gen), adaptive_threads=False)
    y = torch.randn(1, 8, 9, 9, generator=gen).contiguous(memory_format=torch.channels_last)
    with engine.profile() as records:
        for _ in range(4):
            fixed(y)
    assert {r.threads for r in records} == {threads}
