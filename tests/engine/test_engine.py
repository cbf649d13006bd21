"""Engine controls: info, ISA/threads switches, environment overrides, profiling, grouped convs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from xnorlab import engine
from xnorlab.engine import reference
from xnorlab.engine.errors import KernelInputError

needs_native = pytest.mark.skipif(
    engine.info()["backend"] != "native", reason="native engine not built or forced off"
)

INFO_KEYS = {"isa", "compiled_isas", "supported_isas", "threads", "thread_pool", "compiler",
             "build_type", "abi_version", "backend"}  # fmt: skip


def _info_in_subprocess(**env: str) -> dict[str, object]:
    code = "import json, xnorlab.engine as k; print(json.dumps(k.info()))"
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_info_reports_the_engine() -> None:
    info = engine.info()
    assert info.keys() >= INFO_KEYS
    if info["backend"] == "native":
        assert info["isa"] in info["supported_isas"]
        assert set(info["supported_isas"]) <= set(info["compiled_isas"])
        assert "scalar" in info["supported_isas"]
        assert info["thread_pool"] in ("openmp", "own")
    else:
        assert info["thread_pool"] is None


def test_the_native_engine_is_built_and_in_use() -> None:
    """The native-only tests skip without the engine; this one makes a missing build fail.

    ``pip install`` builds ``xnorlab.engine._native``; if it is absent or broken at import, the facade
    would fall back to the reference silently and the suite would go green on skips.
    """
    import xnorlab.engine._native as native

    if os.environ.get("XNORLAB_KERNEL", "") == "reference":
        pytest.fail("XNORLAB_KERNEL=reference is set: the suite must test the native engine")
    assert engine.info()["backend"] == "native"
    assert "scalar" in native.compiled_isas()


@needs_native
def test_environment_forces_reference_and_isa() -> None:
    forced = _info_in_subprocess(XNORLAB_KERNEL="reference", XNORLAB_ISA="")
    assert forced["backend"] == "reference"
    scalar = _info_in_subprocess(XNORLAB_ISA="scalar", XNORLAB_THREADS="3")
    assert (scalar["isa"], scalar["threads"]) == ("scalar", 3)


@needs_native
def test_unusable_isa_override_is_a_clear_error() -> None:
    code = (
        "import xnorlab.engine as k\n"
        "try:\n    k.info()\nexcept k.KernelConfigError as e:\n    print('ERR', e)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "XNORLAB_ISA": "sparc"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ERR cannot choose the kernel ISA") and "sparc" in done.stdout


@needs_native
def test_thread_counts_give_identical_results() -> None:
    x, w = torch.randn(3, 70, 13, 13), torch.randn(40, 70, 3, 3)
    before = engine.get_threads()
    try:
        engine.set_threads(1)
        one = engine.xnor_conv2d(x, w, padding=1)
        engine.set_threads(2)
        assert engine.get_threads() == 2
        assert torch.equal(engine.xnor_conv2d(x, w, padding=1), one)
    finally:
        engine.set_threads(before)


@needs_native
def test_profile_records_every_native_call() -> None:
    x, w = torch.randn(2, 16, 9, 9), engine.pack_conv2d_weight(torch.randn(32, 16, 3, 3))
    engine.xnor_conv2d(x, w)  # outside: not recorded
    with engine.profile() as records:
        engine.xnor_conv2d(x, w, padding=1)
        engine.bwn_linear(torch.randn(1, 64), torch.randn(8, 64))
    assert [r.op for r in records] == ["xnor_conv2d", "bwn_linear"]
    conv = records[0]
    assert (conv.shape, conv.weight_shape, conv.out_shape) == (
        (2, 16, 9, 9),
        (32, 16, 3, 3),
        (2, 32, 9, 9),
    )
    assert conv.binary_macs == 2 * 32 * 81 * 16 * 9
    parts = conv.pack_s + conv.popcount_s + conv.scale_s + conv.other_s
    assert conv.popcount_s > 0 and conv.pack_s > 0
    assert parts == pytest.approx(conv.total_s)


def test_grouped_conv_runs_in_the_reference() -> None:
    x, w = torch.randn(2, 8, 7, 7), torch.randn(8, 2, 3, 3)
    out = engine.xnor_conv2d(x, w, padding=1, groups=4)
    torch.testing.assert_close(out, reference.xnor_conv2d(x, w, padding=1, groups=4))


def test_same_padding_and_asymmetric_geometry(isa: str) -> None:
    x, w = torch.randn(1, 5, 8, 9), torch.randn(6, 5, 4, 2)
    for pad_mode in ("zero", "one"):
        out = engine.xnor_conv2d(x, w, padding="same", dilation=(2, 1), pad_mode=pad_mode)
        ref = reference.xnor_conv2d(x, w, padding="same", dilation=(2, 1), pad_mode=pad_mode)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)
    rect = engine.xnor_conv2d(x, w, stride=(2, 1), padding=(1, 3), scaling="scalar")
    ref = reference.xnor_conv2d(x, w, stride=(2, 1), padding=(1, 3), scaling="scalar")
    torch.testing.assert_close(rect, ref, rtol=1e-5, atol=1e-4)


@needs_native
def test_concurrent_calls_from_python_threads_are_safe() -> None:
    from concurrent.futures import ThreadPoolExecutor

    inputs = [torch.randn(2, 40, 12, 12) for _ in range(6)]
    weight = engine.pack_conv2d_weight(torch.randn(48, 40, 3, 3))
    expected = [engine.xnor_conv2d(x, weight, padding=1) for x in inputs]
    with ThreadPoolExecutor(max_workers=3) as pool:
        got = list(pool.map(lambda x: engine.xnor_conv2d(x, weight, padding=1), inputs * 3))
    for index, out in enumerate(got):
        assert torch.equal(out, expected[index % len(inputs)])


@needs_native
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_inputs_larger_than_the_cache_are_computed_in_slabs_alike(
    isa: str, layout: str, threads: int
) -> None:
    """On one thread, inputs over 1 MiB run a few images at a time (pack, K map, conv per
    slab, the next slab's input prefetched); with more threads the batch stays whole. Either
    way every image must come out as if computed alone, and as the reference."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 64, 40, 40, generator=gen)  # 1.2 MiB: one 400 KiB image per slab
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    weight = engine.pack_conv2d_weight(torch.randn(40, 64, 3, 3, generator=gen))
    bias = torch.randn(40, generator=gen)
    for scaling in ("kmap", "scalar", "none"):
        whole = engine.xnor_conv2d(x, weight, bias, padding=1, scaling=scaling)
        alone = torch.cat([engine.xnor_conv2d(x[i : i + 1], weight, bias, padding=1,
                                               scaling=scaling) for i in range(3)])  # fmt: skip
        assert torch.equal(whole, alone), scaling
        ref = reference.xnor_conv2d(x, weight, bias, padding=1, scaling=scaling)
        torch.testing.assert_close(whole, ref, rtol=1e-5, atol=1e-4)


@needs_native
@pytest.mark.parametrize("batch", [2, 4, 5, 9])
@pytest.mark.parametrize(("channels", "size"), [(64, 34), (16, 32)])
def test_batches_on_two_threads_give_each_image_its_own_result(
    isa: str, batch: int, channels: int, size: int
) -> None:
    """On several threads a batch runs image by image (one task per image: pack, K map and conv
    on the thread's scratch) when it splits evenly or has >= 4 images per thread (4, 9 images)
    and its input is large (64@34x34: 296 KiB per image) or its weights small (16@32x32, 24
    filters), and in batch-wide passes otherwise (2, 5 images). Every image must come out as if
    computed alone, in either layout and scaling, and match the reference."""
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(batch, channels, size, size, generator=gen)
    weight = engine.pack_conv2d_weight(torch.randn(24, channels, 3, 3, generator=gen))
    bias = torch.randn(24, generator=gen)
    before = engine.get_threads()
    engine.set_threads(2)
    try:
        for layout in (torch.contiguous_format, torch.channels_last):
            xl = x.contiguous(memory_format=layout)
            for scaling in ("kmap", "scalar", "none"):
                whole = engine.xnor_conv2d(xl, weight, bias, padding=1, scaling=scaling)
                alone = [engine.xnor_conv2d(xl[i : i + 1], weight, bias, padding=1,
                                             scaling=scaling) for i in range(batch)]  # fmt: skip
                assert torch.equal(whole, torch.cat(alone)), (layout, scaling)
                ref = reference.xnor_conv2d(xl, weight, bias, padding=1, scaling=scaling)
                torch.testing.assert_close(whole, ref, rtol=1e-5, atol=1e-4)
    finally:
        engine.set_threads(before)


@needs_native
@pytest.mark.parametrize("batch", [40, 43])
def test_small_images_grouped_per_task_give_each_image_its_own_result(isa: str, batch: int) -> None:
    """On several threads, images under 64 KiB are computed a group per task (here 5 per task;
    43 leaves a last task of 3). Every image must come out as if computed alone and as the
    reference, and a NaN in the last group is reported."""
    from xnorlab.binary.binarize import NaNInputWarning

    gen = torch.Generator().manual_seed(13)
    x = torch.randn(batch, 6, 14, 14, generator=gen)  # LeNet's second conv: 4.7 KiB per image
    w = torch.randn(16, 6, 5, 5, generator=gen)
    weight = engine.pack_conv2d_weight(w)
    before = engine.get_threads()
    engine.set_threads(2)
    try:
        whole = engine.xnor_conv2d(x, weight, scaling="kmap")
        alone = torch.cat([engine.xnor_conv2d(x[i : i + 1], weight, scaling="kmap")
                           for i in range(batch)])  # fmt: skip
        with_nan = x.clone()
        with_nan[batch - 1, 5, 13, 13] = float("nan")
        with pytest.warns(NaNInputWarning):
            engine.xnor_conv2d(with_nan, weight, scaling="kmap")
    finally:
        engine.set_threads(before)
    assert torch.equal(whole, alone)
    torch.testing.assert_close(whole, reference.xnor_conv2d(x, w, scaling="kmap"), rtol=1e-5,
                               atol=1e-4)  # fmt: skip


@needs_native
@pytest.mark.parametrize(
    ("out_channels", "batch", "over_1_mib"),
    [(32, 4, True), (48, 3, True), (64, 2, True), (40, 4, True), (32, 1, False)],
)
def test_large_outputs_written_with_streaming_stores_match_the_reference(
    isa: str, threads: int, out_channels: int, batch: int, over_1_mib: bool
) -> None:
    """Outputs over 1 MiB whose channel count is a multiple of 16 are written with non-temporal
    stores (48: the last 32-channel block is half full and keeps masked stores; 40: not a
    multiple of 16, and 32 at batch 1, 288 KiB: ordinary stores). The result must not depend on
    that."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(batch, 70, 48, 48, generator=gen)  # >= 288 KiB of output per image
    w = torch.randn(out_channels, 70, 3, 3, generator=gen)
    bias = torch.randn(out_channels, generator=gen)
    out = engine.xnor_conv2d(x, engine.pack_conv2d_weight(w), bias, padding=1)
    assert (out.numel() * 4 > 1 << 20) == over_1_mib
    ref = reference.xnor_conv2d(x, w, bias, padding=1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)
    sign_w = torch.where(w < 0, -1.0, 1.0)  # alpha = 1: the exact integer formula
    exact = engine.xnor_conv2d(x, engine.pack_conv2d_weight(sign_w), padding=1, scaling="none")
    expected = torch.nn.functional.conv2d(torch.where(x < 0, -1.0, 1.0), sign_w, padding=1)
    assert torch.equal(exact, expected)


@needs_native
@pytest.mark.parametrize("nan_image", [0, 3])
def test_a_nan_in_any_image_of_an_image_parallel_batch_is_reported(
    isa: str, nan_image: int
) -> None:
    from xnorlab.binary.binarize import NaNInputWarning

    x = torch.randn(4, 64, 34, 34)
    x[nan_image, 63, 33, 33] = float("nan")
    weight = engine.pack_conv2d_weight(torch.randn(8, 64, 3, 3))
    before = engine.get_threads()
    engine.set_threads(2)
    try:
        with pytest.warns(NaNInputWarning):
            out = engine.xnor_conv2d(x, weight, padding=1, scaling="kmap")
    finally:
        engine.set_threads(before)
    with pytest.warns(NaNInputWarning):
        ref = reference.xnor_conv2d(x, weight, padding=1, scaling="kmap")
    torch.testing.assert_close(out, ref, equal_nan=True)


@needs_native
def test_a_nan_in_the_last_slab_is_reported(isa: str, threads: int) -> None:
    from xnorlab.binary.binarize import NaNInputWarning

    x = torch.randn(3, 64, 40, 40)
    x[2, 7, 39, 0] = float("nan")
    weight = engine.pack_conv2d_weight(torch.randn(8, 64, 3, 3))
    with pytest.warns(NaNInputWarning):
        out = engine.xnor_conv2d(x, weight, padding=1, scaling="none")
    with pytest.warns(NaNInputWarning):
        ref = reference.xnor_conv2d(x, weight, padding=1, scaling="none")
    torch.testing.assert_close(out, ref)


@needs_native
def test_microkernel_rate_runs_the_active_isa_and_checks_its_arguments(isa: str) -> None:
    import math

    rate = engine.microkernel_rate(65, 40, kernel=3, seconds=0.005)  # two words, two blocks
    assert rate > 0 and math.isfinite(rate)
    for bad in ({"in_channels": 0}, {"out_channels": True}, {"kernel": 16}, {"seconds": 0.0},
                {"seconds": float("nan")}):  # fmt: skip
        args: dict[str, object] = {"in_channels": 64, "out_channels": 64, "seconds": 0.001, **bad}
        with pytest.raises(engine.KernelConfigError):
            engine.microkernel_rate(**args)  # type: ignore[arg-type]


@needs_native
def test_repeated_calls_reuse_validated_parameters_without_skipping_checks() -> None:
    x = torch.randn(2, 20, 9, 9)
    weight = engine.pack_conv2d_weight(torch.randn(12, 20, 3, 3))
    first = engine.xnor_conv2d(x, weight, padding=1)
    assert len(weight.call_cache) == 1
    again = engine.xnor_conv2d(x.clone(), weight, padding=1)  # a cache hit on a new buffer
    assert torch.equal(first, again) and len(weight.call_cache) == 1
    bias = torch.randn(12)
    torch.testing.assert_close(engine.xnor_conv2d(x, weight, bias, padding=1),
                               first + bias.view(1, -1, 1, 1))  # fmt: skip
    with pytest.raises(KernelInputError, match="bias"):
        engine.xnor_conv2d(x, weight, torch.randn(5), padding=1)
    with pytest.raises(KernelInputError):
        engine.xnor_conv2d(x, weight, padding=True)  # True == 1, but bools are refused
    with pytest.raises(KernelInputError):
        engine.xnor_conv2d(x, weight, padding=1, scaling="kmapp")
    last = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(engine.xnor_conv2d(last, weight, padding=1), first)
    assert len(weight.call_cache) == 2  # the layout is part of the key
    for size in range(10, 20):  # the cache stays small
        engine.xnor_conv2d(torch.randn(1, 20, size, size), weight)
    assert 1 <= len(weight.call_cache) <= 8


@needs_native
def test_repeated_linear_calls_reuse_their_setup_and_stay_exact() -> None:
    from xnorlab.binary.binarize import NaNInputWarning
    from xnorlab.binary.modes import InputScaling

    weight = engine.pack_linear_weight(torch.randn(7, 70))
    x = torch.randn(2, 3, 70)
    first = (engine.xnor_linear(x, weight), engine.bwn_linear(x, weight))
    assert len(weight.call_cache) == 2  # one entry per op and shape
    again = (engine.xnor_linear(x.clone(), weight), engine.bwn_linear(x.clone(), weight))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert len(weight.call_cache) == 2
    weight.call_cache.clear()
    engine.xnor_linear(x, weight, scaling=InputScaling.KMAP)  # layers pass the enum
    engine.xnor_linear(x, weight, scaling="kmap")  # the same setting
    assert len(weight.call_cache) == 1
    bias = torch.randn(7)
    torch.testing.assert_close(engine.bwn_linear(x, weight, bias), first[1] + bias)
    graded = x.clone().requires_grad_(True)  # a cache hit on a tensor that requires grad
    assert torch.equal(engine.xnor_linear(graded, weight), first[0])
    x[1, 2, 5] = float("nan")
    with pytest.warns(NaNInputWarning):
        engine.xnor_linear(x, weight)
    with pytest.raises(KernelInputError, match="last dim"):
        engine.xnor_linear(torch.randn(2, 71), weight)
