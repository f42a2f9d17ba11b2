"""From a trained model to files a device runs: ONNX export with parity checks, quantization
schemes (one registered config class each), the per-node sensitivity search, the device kit."""
