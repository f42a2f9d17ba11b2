"""The device side, torch-free: numpy, onnxruntime and soundfile only.

- `model`: `EdgeModel`, one exported model (keyword, speaker embedding, verification);
- `streaming`: `Detector`, keyword events along a continuous stream;
- `metadata`: what an exported file carries.

Scoring and timing files on the training machine live in `edgedistill.evaluation`.

`edgedistill.runtime.{__init__, model, streaming, metadata}` and `edgedistill.audio` are
copied into every device kit (`edgedistill export`).
"""

from edgedistill.runtime.model import EdgeModel, softmax
from edgedistill.runtime.streaming import Detector

__all__ = ["EdgeModel", "Detector", "softmax"]
