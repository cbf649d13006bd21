"""Model storage float vs packed, counted by hand."""

from __future__ import annotations

from measure_support import binarized

from xnorlab.binary.modes import Mode
from xnorlab.measure.memory import model_memory, packed_weight_bytes


def test_packed_bytes_by_hand() -> None:
    # 16 filters of 8*3*3 = 72 bits: 1152 bits = 144 bytes, plus 16 float32 alphas
    assert packed_weight_bytes((16, 8, 3, 3)) == 144 + 64
    assert packed_weight_bytes((10, 3)) == 4 + 40  # 30 bits round up to 4 bytes


def test_model_memory_by_hand() -> None:
    report = model_memory(binarized("paper"))  # only the middle conv is binarized
    by_name = {layer.name: layer for layer in report.layers}
    assert by_name["0"].float_bytes == by_name["0"].packed_bytes == (72 + 8) * 4
    assert by_name["3"].mode is Mode.XNOR
    assert by_name["3"].float_bytes == 16 * 72 * 4
    assert by_name["3"].packed_bytes == 144 + 64
    assert report.other_bytes == (8 + 8) * 4 + (8 + 8) * 4  # BN weight/bias + running stats
    linear = (256 * 10 + 10) * 4
    assert report.float_bytes == (72 + 8) * 4 + 16 * 72 * 4 + linear + report.other_bytes
    assert report.packed_bytes == report.float_bytes - 16 * 72 * 4 + 144 + 64
    assert model_memory(binarized("float")).ratio == 1.0
