"""Models: networks (MONAI, Keras files rebuilt in PyTorch), the registry of bundled and imported
models with their cards, nnU-Net and SCT model folders, the backends (ONNX Runtime, PyTorch) and
the sliding-window runner."""
