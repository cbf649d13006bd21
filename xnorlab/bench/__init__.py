"""Benchmark of the XNOR engine against torch float32 and int8 (Qt-free; CLI and GUI call it).

Data first: every measuring function returns frozen dataclasses; ``xnorlab.cli.bench`` renders
them as a table or JSON. What is not benchmark-specific (timing, interleaving, the CPU and
engine description, running a model in the engine) comes from ``xnorlab.measure``.
Conventions used in every figure:

* A time is the median of many runs after warm-up (min and max kept); both sides run with the
  same thread count (``torch.set_num_threads`` and the engine's ``set_threads``).
* The float baseline of a conv is the better of ``F.conv2d`` on NCHW and on channels_last.
* The XNOR time is everything a user pays from a float NCHW tensor to a float output (sign +
  pack, popcount conv, padding correction, scaling, allocation, the Python call); the weight is
  packed once beforehand, as a frozen layer does.
* ``GOP/s = 2 * MACs / time`` (a binary MAC counts 2 ops like a float MAC counts 2 FLOPs);
  ``speedup = baseline time / xnor time``; ``ceiling fraction = achieved binary MAC/s /
  (per-core popcount ceiling * threads)``.
"""

from xnorlab.bench.engine import Engine, SplitTiming, profile_split
from xnorlab.bench.machine import (
    BUSY_LOAD,
    DOCUMENTED_CEILINGS,
    MALLOC_ENV,
    Ceilings,
    MachineInfo,
    int8_engine,
    machine_info,
    measure_ceilings,
)
from xnorlab.bench.measure import (
    BaselineTimings,
    ConvResult,
    LinearResult,
    ModelResult,
    ThreadScalingResult,
    measure_bwn_linear,
    measure_conv_group,
    measure_model,
    measure_thread_scaling,
)
from xnorlab.bench.run import (
    BenchConfig,
    BenchReport,
    TargetCheck,
    run_benchmark,
    target_checks,
    validate_config,
    validate_isas,
)
from xnorlab.bench.timing import (
    QUICK_PLAN,
    QUICK_SHAPES,
    RESNET18_SHAPES,
    BenchmarkError,
    ConvShape,
    ceiling_fraction,
    gops,
)

__all__ = [
    "BUSY_LOAD",
    "DOCUMENTED_CEILINGS",
    "MALLOC_ENV",
    "QUICK_PLAN",
    "QUICK_SHAPES",
    "RESNET18_SHAPES",
    "BaselineTimings",
    "BenchConfig",
    "BenchReport",
    "BenchmarkError",
    "Ceilings",
    "ConvResult",
    "ConvShape",
    "Engine",
    "LinearResult",
    "MachineInfo",
    "ModelResult",
    "SplitTiming",
    "TargetCheck",
    "ThreadScalingResult",
    "ceiling_fraction",
    "gops",
    "int8_engine",
    "machine_info",
    "measure_bwn_linear",
    "measure_ceilings",
    "measure_conv_group",
    "measure_model",
    "measure_thread_scaling",
    "profile_split",
    "run_benchmark",
    "target_checks",
    "validate_config",
    "validate_isas",
]  # fmt: skip
