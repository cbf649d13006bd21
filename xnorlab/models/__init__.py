"""Models: the demo architectures, the torchvision zoo, model specs, checkpoints and the
``.xnor`` packed format with its inference-only packed layers."""
