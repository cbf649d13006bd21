"""The machine a measurement runs on: the CPU, the XNOR engine's state, threads and load.

Every description of the engine (report header, metrics panel, benchmark) is built on
``xnorlab.engine.info()`` through ``engine_info``, and every reading of ``/proc/cpuinfo`` goes
through ``cpu_fields``. ``engine_model`` (a deployed copy) is the one way a whole measured model
runs in the engine, ``engine_context`` the way its layers do.
"""

from __future__ import annotations

import contextlib
import os
import platform
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xnorlab import engine
from xnorlab.binary.modes import Backend
from xnorlab.runtime.deploy import deploy
from xnorlab.runtime.integration import native_backend

# ------------------------------------------------------------------------------ engine


@dataclass(frozen=True)
class EngineInfo:
    """The XNOR engine now: backend ("native" or "reference"), active ISA, pool threads and
    the pool's runtime (``engine.ThreadPool`` value; None for the reference)."""

    backend: str
    isa: str
    threads: int
    supported_isas: tuple[str, ...] = ()
    thread_pool: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # engine.info() as it returned

    @property
    def is_native(self) -> bool:
        return self.backend == "native"

    @property
    def description(self) -> str:
        """One line, e.g. ``"native avx512, 2 threads (openmp pool)"``; the pool is named only
        where threads run on it."""
        pool = f" ({self.thread_pool} pool)" if self.thread_pool and self.threads > 1 else ""
        threads = f"{self.threads} thread{'' if self.threads == 1 else 's'}"
        return f"{self.backend} {self.isa}, {threads}{pool}"


def engine_info() -> EngineInfo:
    """The engine's state from ``xnorlab.engine.info()``."""
    info = engine.info()
    return EngineInfo(
        backend=str(info["backend"]),
        isa=str(info["isa"]),
        threads=int(info["threads"]),
        supported_isas=tuple(str(isa) for isa in info["supported_isas"]),
        thread_pool=info["thread_pool"],
        details=dict(info),
    )


def engine_model(model: nn.Module, backend: Backend = Backend.NATIVE) -> nn.Module:
    """``model`` as every timed or scored "through the engine" figure runs it.

    ``NATIVE``: ``xnorlab.deploy(model)``, a copy sharing its weights, with packed weights and
    fused chains (its ``runtime.deploy.deploy_report`` says what was fused, or why nothing
    was); ``TORCH``: ``model`` itself. Deploy again after changing weights or modes.
    """
    return deploy(model) if backend is Backend.NATIVE else model


def engine_context(
    model: nn.Module, backend: Backend = Backend.NATIVE
) -> AbstractContextManager[nn.Module]:
    """Run ``model``'s binarized layers in ``backend`` inside the block.

    ``NATIVE``: every wrapped layer runs in the engine (``native_backend``, restored on exit);
    ``TORCH``: the layers keep the backends they are configured with. For measurements that
    need the layers themselves (hooks, modes switched inside the block); figures of the whole
    model use ``engine_model``.
    """
    if backend is Backend.NATIVE:
        return native_backend(model)
    return contextlib.nullcontext(model)


def set_threads(threads: int) -> None:
    """Use ``threads`` threads in torch and, when it is native, in the engine's pool.

    The reference engine runs on torch's threads, so it has no pool of its own to resize.
    """
    torch.set_num_threads(threads)
    if engine_info().is_native:
        engine.set_threads(threads)


# --------------------------------------------------------------------------------- CPU


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor's fields of a ``/proc/cpuinfo`` text (``key: value`` lines up to
    the first blank line)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_fields() -> dict[str, str]:
    """The first processor's ``/proc/cpuinfo`` fields (empty where it is not readable)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return parse_cpuinfo(text)


def cpu_name(fields: dict[str, str] | None = None) -> str:
    """The CPU's model name, else ``platform``'s processor or machine name."""
    fields = cpu_fields() if fields is None else fields
    return fields.get("model name") or platform.processor() or platform.machine()


def cpu_model(fields: dict[str, str] | None = None) -> str:
    """The CPU model name with its family/model numbers (a VM often shows only a brand, e.g.
    "AMD EPYC (family 25, model 17)" = Zen 4)."""
    fields = cpu_fields() if fields is None else fields
    name = cpu_name(fields)
    if "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def cpu_flags(fields: dict[str, str] | None = None) -> set[str]:
    """The CPU feature flags (empty set where ``/proc/cpuinfo`` is not readable)."""
    fields = cpu_fields() if fields is None else fields
    return set(fields.get("flags", "").split())


def machine_description() -> str:
    """CPU model, architecture and logical core count (one line)."""
    system = platform.system()
    return f"{cpu_name()}, {platform.machine()}, {os.cpu_count()} logical cores, {system}"


def load_note() -> str | None:
    """A warning when the machine is busy (1-min load average above the core count); it
    suggests ``--threads 1`` only to a run on more than one thread."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        return None
    cores = os.cpu_count() or 1
    if load <= cores:
        return None
    # Fewer threads only helps a run that uses more than one.
    rerun = "rerun on an idle machine"
    if torch.get_num_threads() > 1:
        rerun += " (or with --threads 1)"
    return (
        f"the machine was busy (load average {load:.1f} on {cores} cores): latencies and "
        f"speedups are unreliable; {rerun}"
    )
