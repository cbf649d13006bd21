"""Reports: built once as frozen data (``build``), then rendered as HTML, JSON, CSV or
Markdown (``render``)."""
