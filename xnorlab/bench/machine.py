"""The machine a benchmark runs on: CPU, SIMD flags, load, malloc env, measured ceilings.

The CPU and the engine are described by ``xnorlab.measure.machine``; this module adds what
only the benchmark records (ceilings, malloc settings, scheduling, load over the run).
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xnorlab.bench.engine import Engine
from xnorlab.measure.machine import cpu_flags, cpu_model

#: glibc settings applied to both sides (must be in the environment before the process starts):
#: keep buffers up to 32 MiB (glibc's maximum mmap threshold) on the heap and never trim it, so
#: page faults of freshly mmapped outputs are not part of any timing.
MALLOC_ENV: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "4294967296",
}
#: 1-minute load average above which timings on this 2-core machine are called noisy.
BUSY_LOAD = 0.5


# --------------------------------------------------------------------------- ceilings

#: kernel.md's per-core figures for a Xeon with AVX-512 VPOPCNTDQ, used only when the
#: microbenchmark cannot be built here (no C compiler, or ``benchmarks/`` not shipped).
DOCUMENTED_CEILINGS: dict[str, float] = {
    "popcount_avx512": 965.0, "popcount_avx2": 254.0, "popcount_scalar": 190.0,
    "fma_fp32": 89.0, "vnni_int8": 330.0,
}  # fmt: skip
_CEILING_SOURCE = Path(__file__).resolve().parents[2] / "benchmarks" / "ceilings.c"
# (name in the report, C function, CPU flags it needs)
_CEILING_LOOPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("popcount_avx512", "popcount_avx512_gbmac", ("avx512f", "avx512_vpopcntdq")),
    ("popcount_avx2", "popcount_avx2_lut_gbmac", ("avx2",)),
    ("popcount_scalar", "popcount_scalar_gbmac", ("popcnt",)),
    ("fma_fp32_512", "fma_avx512_gmac", ("avx512f",)),
    ("fma_fp32_256", "fma_avx2_gmac", ("avx2", "fma")),
    ("vnni_int8", "vnni_avx512_gmac", ("avx512f", "avx512_vnni")),
)


@dataclass(frozen=True)
class Ceilings:
    """Per-core throughput ceilings in G (binary) MAC/s, and where they come from."""

    rates_gmac: dict[str, float]
    source: str

    def popcount_for(self, isa: str) -> float:
        """The popcount ceiling of ``isa``: the best loop that ISA may use (avx2: nibble LUT
        or scalar popcnt); ``reference`` and unknown names get the best one of the machine."""
        rates = self.rates_gmac
        scalar = rates.get("popcount_scalar", 0.0)
        by_isa = {
            "avx512": rates.get("popcount_avx512", 0.0),
            "avx2": max(rates.get("popcount_avx2", 0.0), scalar),
            "scalar": scalar,
        }
        value = by_isa.get(isa, max(by_isa.values()))
        return value if value > 0 else max(by_isa.values())

    @property
    def fma_gmac(self) -> float:
        """fp32 FMA ceiling (the better of 512- and 256-bit)."""
        rates = self.rates_gmac
        return max(rates.get("fma_fp32_512", 0.0), rates.get("fma_fp32_256", 0.0),
                   rates.get("fma_fp32", 0.0))  # fmt: skip


def int8_engine() -> str | None:
    """torch's quantized engine for x86 int8 convs (``x86``, else ``fbgemm``), or None."""
    engines = torch.backends.quantized.supported_engines
    return next((name for name in ("x86", "fbgemm") if name in engines), None)


def _build_ceiling_library(workdir: Path) -> ctypes.CDLL:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not _CEILING_SOURCE.is_file():
        raise OSError("no C compiler or no benchmarks/ceilings.c")
    library = workdir / "ceilings.so"
    subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", str(_CEILING_SOURCE), "-o", str(library)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return ctypes.CDLL(str(library))


def _run_ceiling_loop(library: ctypes.CDLL, symbol: str, iterations: int, runs: int) -> float:
    """The best rate of ``runs`` short runs: a run that another process preempts is slower,
    never faster, so the maximum is the least disturbed estimate of the ceiling."""
    function = getattr(library, symbol)
    function.restype = ctypes.c_double
    function.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_int64)]
    sink = ctypes.c_int64()
    return max(float(function(iterations, ctypes.byref(sink))) for _ in range(runs))


def measure_ceilings(quick: bool = False) -> Ceilings:
    """Measure the per-core ceilings with ``benchmarks/ceilings.c`` (register-only loops, one
    thread); fall back to kernel.md's documented Xeon figures when it cannot be built."""
    flags = cpu_flags()
    iterations, runs = (100_000, 3) if quick else (2_000_000, 25)  # the best of many short runs
    try:
        with tempfile.TemporaryDirectory(prefix="xnorlab-ceil-") as workdir:
            library = _build_ceiling_library(Path(workdir))
            rates = {
                name: _run_ceiling_loop(library, symbol, iterations, runs)
                for name, symbol, needs in _CEILING_LOOPS
                if all(flag in flags for flag in needs)
            }
    except (OSError, subprocess.SubprocessError) as exc:
        return Ceilings(dict(DOCUMENTED_CEILINGS), f"kernel.md Xeon figures (not measured: {exc})")
    return Ceilings(
        rates,
        "measured here: benchmarks/ceilings.c, register-only loops, 1 core, best of short runs",
    )


@dataclass(frozen=True)
class MachineInfo:
    """Everything that decides the numbers: CPU, ISA, threads, versions, load, malloc env."""

    cpu_model: str
    logical_cpus: int
    cpu_simd_flags: tuple[str, ...]
    torch_version: str
    torch_cpu_capability: str
    int8_engine: str | None
    engine: str
    engine_info: dict[str, Any]
    python_version: str
    date_utc: str
    malloc_env: dict[str, str | None]
    load_start: tuple[float, float, float]
    nice: int = 0  # scheduling niceness of the benchmark process (negative = favoured)
    autogroup: str | None = None  # Linux scheduler autogroup and its nice (/proc/self/autogroup)
    env: dict[str, str] = field(default_factory=dict)  # the set variables of RELEVANT_ENV
    load_end: tuple[float, float, float] | None = None

    @property
    def busy_warning(self) -> str | None:
        """A warning when the 1-minute load (another helper's job) makes timings noisy."""
        loads = [self.load_start[0]] + ([self.load_end[0]] if self.load_end else [])
        if max(loads) < BUSY_LOAD:
            return None
        return (
            f"machine busy (1-min load {', '.join(f'{v:.2f}' for v in loads)} on "
            f"{self.logical_cpus} CPUs): timings are noisy; rerun when `uptime` is low"
        )


_SIMD_FLAGS = ("popcnt", "avx2", "fma", "avx512f", "avx512bw", "avx512_vpopcntdq",
               "avx512_vnni", "avx512_bitalg")  # fmt: skip


#: Environment variables that change what the benchmark measures (shown when set).
RELEVANT_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "XNORLAB_ISA", "XNORLAB_THREADS", "XNORLAB_THREAD_POOL", "XNORLAB_KERNEL",
                "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")  # fmt: skip


def _autogroup() -> str | None:
    """``/autogroup-N nice K`` where the kernel groups processes per session (else None)."""
    try:
        return Path("/proc/self/autogroup").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def machine_info(engine: Engine) -> MachineInfo:
    """Describe this machine and process now (load average at the start of the run)."""
    flags = cpu_flags()
    return MachineInfo(
        cpu_model=cpu_model(),
        logical_cpus=os.cpu_count() or 1,
        cpu_simd_flags=tuple(f for f in _SIMD_FLAGS if f in flags),
        torch_version=torch.__version__,
        torch_cpu_capability=str(torch.backends.cpu.get_cpu_capability()),
        int8_engine=int8_engine(),
        engine=engine.label,
        engine_info=dict(engine.info),
        python_version=platform.python_version(),
        date_utc=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        malloc_env={name: os.environ.get(name) for name in MALLOC_ENV},
        load_start=os.getloadavg(),
        nice=os.nice(0),
        autogroup=_autogroup(),
        env={name: os.environ[name] for name in RELEVANT_ENV if name in os.environ},
    )
