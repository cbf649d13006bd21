"""Training and fine-tuning in the current modes (the paper's scheme: real-valued weights
updated through the binarized forward)."""
