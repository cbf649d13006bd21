"""The machine and engine description, the engine context, threads and the load note."""

from __future__ import annotations

import os

import pytest
import torch
from measure_support import binarized

from xnorlab import engine
from xnorlab.binary.modes import Backend
from xnorlab.binary.surgery import wrapped_layers
from xnorlab.measure import machine
from xnorlab.measure.machine import (
    EngineInfo,
    cpu_flags,
    cpu_model,
    cpu_name,
    engine_context,
    engine_info,
    load_note,
    parse_cpuinfo,
    set_threads,
)

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu popcnt avx2 avx512f

processor\t: 1
model name\t: another CPU
"""


def test_engine_info_is_the_engines_own_state() -> None:
    info, raw = engine_info(), engine.info()
    assert (info.backend, info.isa, info.threads) == (raw["backend"], raw["isa"], raw["threads"])
    assert info.supported_isas == tuple(raw["supported_isas"]) and info.details == raw
    assert info.is_native == (raw["backend"] == "native")
    assert info.thread_pool == raw["thread_pool"]
    assert info.description.startswith(f"{raw['backend']} {raw['isa']}, {raw['threads']} thread")


def test_the_description_names_the_pool_only_where_threads_run_on_it() -> None:
    two = EngineInfo("native", "avx512", 2, thread_pool="own")
    assert two.description == "native avx512, 2 threads (own pool)"
    assert EngineInfo("native", "avx512", 1, thread_pool="openmp").description == (
        "native avx512, 1 thread"
    )
    assert EngineInfo("reference", "reference", 1).description == "reference reference, 1 thread"


def test_cpuinfo_fields_of_the_first_processor() -> None:
    fields = parse_cpuinfo(CPUINFO)
    assert fields["model name"] == "AMD EPYC" and fields["cpu family"] == "25"
    assert cpu_name(fields) == "AMD EPYC"
    assert cpu_model(fields) == "AMD EPYC (family 25, model 17)"
    assert cpu_flags(fields) == {"fpu", "popcnt", "avx2", "avx512f"}
    assert cpu_flags({}) == set() and cpu_name({})  # platform's name when nothing is known


def test_machine_description_names_cpu_cores_and_system() -> None:
    text = machine.machine_description()
    assert text.startswith(cpu_name()) and f"{os.cpu_count()} logical cores" in text


def test_engine_context_runs_native_inside_only() -> None:
    model = binarized("paper")

    def backends() -> set[Backend]:
        return {layer.config.backend for layer in wrapped_layers(model).values()}

    with engine_context(model, Backend.NATIVE) as inside:
        assert inside is model and backends() == {Backend.NATIVE}
    assert backends() == {Backend.TORCH}
    with engine_context(model, Backend.TORCH):
        assert backends() == {Backend.TORCH}


def test_load_note_only_when_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 0.0, 0.0))
    assert load_note() is None
    monkeypatch.setattr(os, "getloadavg", lambda: (3.5, 0.0, 0.0))
    assert "busy (load average 3.5 on 2 cores)" in (load_note() or "")


def test_load_note_suggests_one_thread_only_to_a_run_on_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.5, 0.0, 0.0))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert "--threads 1" in (load_note() or "")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    note = load_note() or ""
    assert "rerun on an idle machine" in note and "--threads" not in note


def test_set_threads_sets_torch_and_the_native_pool() -> None:
    torch_before, engine_before = torch.get_num_threads(), engine.info()["threads"]
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        assert engine.info()["threads"] == 1
    finally:
        torch.set_num_threads(torch_before)
        if engine_info().is_native:
            engine.set_threads(engine_before)
