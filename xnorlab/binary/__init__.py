"""Binarization at the bottom of the house: modes, the sign / alpha / K-map math, the
float-BWN-XNOR layer wrappers, model surgery and per-layer statistics. Pure torch."""
