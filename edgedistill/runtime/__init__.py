"""The device side, torch-free: numpy, onnxruntime and soundfile only.

- `model`: `EdgeModel`, one exported model (keyword, speaker embedding, verification);
- `streaming`: `Detector`, keyword events along a continuous stream;
- `metadata`: what an exported file carries;
- `evaluate`, `latency`: scoring and timing an exported file on labelled clips (used on the
  training machine; not shipped in the device kit).

`edgedistill.runtime.{__init__, model, streaming, metadata}` and `edgedistill.audio` are
copied into every device kit (`edgedistill export`).
"""

from edgedistill.runtime.model import EdgeModel, softmax
from edgedistill.runtime.streaming import Detector

__all__ = ["EdgeModel", "Detector", "softmax"]
