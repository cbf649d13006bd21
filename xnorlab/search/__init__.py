"""What to binarize: a measured walk over per-layer modes under an accuracy budget."""
