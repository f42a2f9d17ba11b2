"""The metadata an exported model carries (labels, sample rate, SV threshold, ...).

Stored in the ONNX file's `metadata_props` under the `edgedistill.` prefix, values JSON.
Torch-free and onnx-free at import: it ships in the device kit.
"""

from __future__ import annotations

import json
from pathlib import Path

META_PREFIX = "edgedistill."


class NotAnOnnxModelError(ValueError):
    """A file that does not parse as ONNX (a text file, a truncated download)."""


def decode_metadata(props: dict[str, str]) -> dict:
    """{"edgedistill.labels": '["yes"]', "other": ...} -> {"labels": ["yes"]}: only our keys."""
    return {k[len(META_PREFIX):]: json.loads(v) for k, v in props.items() if k.startswith(META_PREFIX)}


def set_metadata(proto, metadata: dict) -> None:
    """Writes `metadata` into an `onnx.ModelProto`'s metadata_props (values JSON-encoded),
    replacing the edgedistill entries it had and keeping everyone else's."""
    keep = [p for p in proto.metadata_props if not p.key.startswith(META_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for k, v in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + k, json.dumps(v)


def read_metadata(path: str | Path) -> dict:
    """The edgedistill metadata of an .onnx file (needs the `onnx` package, not onnxruntime)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, and whatever a truncated file raises
        raise NotAnOnnxModelError(f"'{path}' is not an ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}): "
                         "the file may be truncated or not ONNX; export it again") from exc
    return decode_metadata({p.key: p.value for p in proto.metadata_props})
