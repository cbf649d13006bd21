"""Data: data set specs and splits, image folders, image decoding and preprocessing, and the
bundled calibration photos."""
