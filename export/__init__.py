"""Export: checkpoints to ONNX with parity checks against PyTorch."""
