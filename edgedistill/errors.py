"""Errors of the export side that the command line turns into one-line messages (torch-free)."""


class ExportError(RuntimeError):
    """The exported graph is invalid or does not match PyTorch, or the export folder holds
    another model's files."""


class QuantizeError(RuntimeError):
    """Quantization failed or would not change the model (e.g. nothing to quantize)."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated or damaged)."""
