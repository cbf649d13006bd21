"""Former home of the metrics panel's measurements; the GUI imports move to the job modules."""

from xnorlab.measure.accuracy import AccuracyReport, compare_accuracy
from xnorlab.measure.latency import LatencyReport, LayerLatency, measure_latency
from xnorlab.measure.memory import MemoryReport, model_memory
from xnorlab.measure.predictions import FilePrediction, TopK, predict_files

__all__ = [
    "AccuracyReport",
    "FilePrediction",
    "LatencyReport",
    "LayerLatency",
    "MemoryReport",
    "TopK",
    "compare_accuracy",
    "measure_latency",
    "model_memory",
    "predict_files",
]
