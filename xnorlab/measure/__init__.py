"""The one measurement stack: used alike by the app, the report, ``xnorlab eval`` and the
benchmark. One module per job:

* ``timing``: timed samples summarised as median / min / max, run plans, interleaved timing;
* ``machine``: the CPU, the XNOR engine's state (on ``xnorlab.engine.info()``), threads, load,
  and the context that runs a model in the chosen engine;
* ``layers``: a private working copy of a model, layer modes, per-layer hooks and shapes;
* ``memory``: storage float vs packed (bytes and bits) and file sizes;
* ``intervals``: an accuracy as a count with its Wilson interval, paired comparisons;
* ``evaluate``: the one top-1 rule and the evaluation of a data set (top-k, confusion);
* ``accuracy``: top-1 float vs current, on tensors, and with one layer binarized alone;
* ``latency``: the per-layer clock and end-to-end latency, float vs current;
* ``predictions``: top-k predictions float vs current.
"""
