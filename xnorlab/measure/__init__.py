"""The one measurement stack: accuracy, latency, memory, predictions and the engine
description, used alike by the app, the report, the CLI and the benchmark."""
