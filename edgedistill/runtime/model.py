"""On-device inference with onnxruntime alone: keyword spotting and speaker verification.

Imports only numpy, onnxruntime and soundfile (no torch), so it runs on a phone, a Raspberry
Pi or any small CPU:

    from edgedistill.runtime import EdgeModel
    m = EdgeModel("model.onnx", threads=1)
    label, probs = m.keyword("clip.wav")
    m.verify("a.wav", "b.wav")   # {"score": 0.71, "same_speaker": True, "threshold": 0.42}

Audio: mono float32 in [-1, 1] at 16 kHz (the model's `sample_rate` metadata); files are read
with soundfile. Other rates are refused rather than resampled silently: resample first (e.g.
`edgedistill.load_audio` on a machine with scipy). One call takes at most `max_seconds` of
audio (default 30 s: attention memory grows with the square of the length, about 190 MB at
30 s and 1.8 GB at 120 s); longer recordings go through a streaming detector in windows.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgedistill.audio import AudioError, load_audio
from edgedistill.runtime.metadata import decode_metadata

MAX_SECONDS = 30.0
# onnxruntime graph rewrites left off by default: its CPU SkipLayerNormalization kernel (what
# SkipLayerNormFusion makes of a residual Add + LayerNormalization) is slower than the two ops it
# replaces at every shape tried (benchmarks/results/ort_fusions.md).
SLOW_FUSIONS = ("SkipLayerNormFusion",)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis, computed in float64."""
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def open_session(path, threads: int = 1, providers: list[str] | None = None,
                 disabled_fusions=SLOW_FUSIONS, optimized_path: str | os.PathLike | None = None):
    """An onnxruntime session for `path` (a file or model bytes) on `threads` intra-op threads,
    every graph optimisation on except the rewrites named in `disabled_fusions` (onnxruntime's
    optimizer names; default `SLOW_FUSIONS`). `optimized_path` writes the optimised graph there
    (to inspect what ran)."""
    ort = _ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, opts, providers=providers or ["CPUExecutionProvider"],
                                disabled_optimizers=list(disabled_fusions))


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the device
        raise ImportError("edgedistill.runtime needs onnxruntime: pip install onnxruntime") from exc
    return onnxruntime


class EdgeModel:
    """An exported edgedistill model.

    Args:
        path: the .onnx file.
        threads: intra-op threads (1 is the usual choice on small devices).
        providers: onnxruntime execution providers (default CPU).
        max_seconds: the longest audio one call accepts (default 30 s); longer audio is an
            `AudioError` (use a streaming detector over windows instead).
        disabled_fusions: onnxruntime graph rewrites to leave off (default `SLOW_FUSIONS`; `()`
            runs every one).
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1, providers: list[str] | None = None,
                 max_seconds: float = MAX_SECONDS, disabled_fusions: tuple[str, ...] = SLOW_FUSIONS):
        path = Path(path)
        if path.is_dir():
            found = sorted(p.name for p in path.glob("*.onnx"))
            raise FileNotFoundError(f"'{path}' is a folder, not a model file: pass the .onnx file inside it"
                                    + (f" (it holds {', '.join(found)})" if found else " (it holds no .onnx file)"))
        if not path.is_file():
            raise FileNotFoundError(f"model file '{path}' does not exist")
        try:
            self.session = open_session(path, threads, providers, disabled_fusions)
        except ImportError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"'{path}' is not a loadable ONNX model ({str(exc).splitlines()[0][:200]}): "
                             "the file may be truncated or not ONNX; export it again") from exc
        raw = self.session.get_modelmeta().custom_metadata_map
        self.metadata = decode_metadata(raw)
        inputs = [i.name for i in self.session.get_inputs()]
        if "version" not in self.metadata and inputs == ["waveform"]:
            raise ValueError(f"'{path}' carries no edgedistill metadata (labels, sample rate, SV threshold): "
                             "it was not written by `edgedistill export` or its export was interrupted; "
                             "export it again")
        # A streaming file (a micro student): log-mel frames and the stream's state in, the scores
        # and the new state out (`edgedistill.deploy.streaming`); the front end runs here, in numpy.
        self.streaming: dict | None = self.metadata.get("streaming")
        self.frontend = None
        if self.streaming is not None:
            from edgedistill.runtime.frontend import LogMelFrontend

            expected = [self.streaming["features"]] + [st["input"] for st in self.streaming["states"]]
            if inputs != expected:
                raise ValueError(f"'{path}' does not match its streaming metadata: inputs {inputs}, expected "
                                 f"{expected}; export it again")
            self.frontend = LogMelFrontend(self.metadata["frontend"])
            self.frame_samples = int(self.streaming["frame_samples"])
            self.window_samples = int(self.streaming["window_frames"]) * self.frame_samples
        elif inputs != ["waveform"]:
            raise ValueError(f"'{path}' is not an edgedistill model: expected one input 'waveform', "
                             f"found {inputs}")
        self.outputs = [o.name for o in self.session.get_outputs()]
        if "version" not in self.metadata:
            raise ValueError(f"'{path}' carries no edgedistill metadata (labels, sample rate, SV threshold): "
                             "it was not written by `edgedistill export` or its export was interrupted; "
                             "export it again")
        self.sample_rate = int(self.metadata.get("sample_rate", 16_000))
        self.min_samples = int(self.metadata.get("min_samples", 400))
        self.labels: list[str] = list(self.metadata.get("labels") or [])
        self.threshold: float | None = self.metadata.get("sv_threshold")
        # Keyword thresholds calibrated at a target false-alarm rate ({label: threshold}; empty
        # where the file has none): the streaming Detector's defaults.
        self.keyword_thresholds: dict[str, float] = dict(self.metadata.get("keyword_thresholds") or {})
        self.speakers: dict[str, np.ndarray] = {}
        self.max_samples = int(max_seconds * self.sample_rate)
        if "max_samples" in self.metadata:  # a model with a fixed longest input (Whisper's 30 s)
            self.max_samples = min(self.max_samples, int(self.metadata["max_samples"]))

    # ---- input checks -------------------------------------------------------------------
    def prepare(self, audio, sample_rate: int | None = None) -> np.ndarray:
        """A path, a float array [samples] or a batch [batch, samples] -> float32 [batch, samples].

        Raises:
            AudioError: wrong dtype, rank, sample rate, channels, NaN/Inf, fewer samples than
                the model's CNN needs, or more than `max_seconds`.
        """
        if isinstance(audio, (str, os.PathLike)):
            x = load_audio(audio, target_sr=self.sample_rate, min_samples=self.min_samples,
                           resample_input=False)
            self._check_length(x.shape[0], f"'{audio}'")
            return x[None, :]
        if not isinstance(audio, np.ndarray):
            raise AudioError(f"expected a file path or a numpy array, got {type(audio).__name__}")
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise AudioError(f"audio is at {sample_rate} Hz but the model needs {self.sample_rate} Hz: "
                             "resample it first (edgedistill.load_audio does it where scipy is installed)")
        if not np.issubdtype(audio.dtype, np.floating):
            raise AudioError(f"audio has dtype {audio.dtype}; float32 in [-1, 1] is expected. "
                             "For int16 PCM use `x.astype(np.float32) / 32768`")
        if audio.ndim == 2 and audio.shape[1] <= 8 and audio.shape[0] > audio.shape[1]:
            # soundfile's layout is [samples, channels]: a 2-column array is stereo, not 2 samples.
            raise AudioError(f"audio has shape {audio.shape}: that is {audio.shape[0]} samples of "
                             f"{audio.shape[1]} channels ([samples, channels], soundfile's layout); the "
                             "model needs mono: average the channels first (`x.mean(axis=1)`)")
        if audio.ndim == 1:
            audio = audio[None, :]
        if audio.ndim != 2:
            raise AudioError(f"audio has shape {audio.shape}: expected [samples] or [batch, samples] "
                             "(mono; average the channels of multi-channel audio first)")
        if audio.shape[1] < self.min_samples:
            raise AudioError(f"audio has {audio.shape[1]} samples ({1000 * audio.shape[1] / self.sample_rate:.1f} ms); "
                             f"the model needs at least {self.min_samples} ({1000 * self.min_samples / self.sample_rate:.0f} ms): "
                             "pad or drop the clip")
        self._check_length(audio.shape[1], "audio")
        if not np.isfinite(audio).all():
            raise AudioError("audio has NaN/Inf samples: fix or drop the clip")
        return np.ascontiguousarray(audio, dtype=np.float32)

    def _check_length(self, n: int, name: str) -> None:
        if n > self.max_samples and "max_samples" in self.metadata and self.max_samples == int(self.metadata["max_samples"]):
            raise AudioError(f"{name} is {n / self.sample_rate:.2f} s long; this model's input is at most "
                             f"{self.max_samples / self.sample_rate:g} s (fixed by its design): cut it into windows "
                             "of that length, or run a streaming detector (edgedistill.runtime.Detector) over it")
        if n > self.max_samples:
            raise AudioError(f"{name} is {n / self.sample_rate:.1f} s long; one call takes at most "
                             f"{self.max_samples / self.sample_rate:g} s (attention memory grows with the "
                             "square of the length). Cut it into clips, or run a streaming detector over "
                             "windows of it; raise EdgeModel(max_seconds=...) only if memory allows")

    def run(self, audio, sample_rate: int | None = None) -> dict[str, np.ndarray]:
        """All model outputs for `audio` (see `prepare`), by output name. A streaming model hears the
        clip from silence (its state starts at zero) and scores its last window (1 s); its trailing
        samples short of a whole frame (20 ms) are not heard, as in training."""
        return dict(zip(self.outputs, self.infer(self.prepare(audio, sample_rate))))

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        """The raw outputs for a float32 batch [batch, samples] already checked (timing, calibration)."""
        if self.streaming is None:
            return self.session.run(None, {"waveform": x})
        out, _ = self.step(x[:, :x.shape[1] - x.shape[1] % self.frame_samples], self.start_stream(x.shape[0]))
        return list(out.values())

    # ---- streaming models -----------------------------------------------------------------
    def start_stream(self, batch: int = 1) -> dict:
        """The state of a fresh stream (a streaming model's): the front end's history and every state tensor at zero."""
        self._need_streaming()
        return {"audio": self.frontend.initial_cache(batch),
                "tensors": [np.zeros((batch, *st["shape"]), np.float32) for st in self.streaming["states"]]}

    def step(self, audio: np.ndarray, state: dict) -> tuple[dict[str, np.ndarray], dict]:
        """(outputs by name, new state) for the next `audio` [batch, samples] of a stream, samples a
        multiple of `frame_samples` (320: 20 ms); the outputs score the window that ends with it."""
        self._need_streaming()
        if audio.ndim != 2 or audio.shape[1] % self.frame_samples or not audio.shape[1]:
            raise AudioError(f"a streaming step takes [batch, samples] with samples a positive multiple of "
                             f"{self.frame_samples} (20 ms); got shape {audio.shape}")
        feats, cache = self.frontend(audio, state["audio"])
        got = self.session.run(None, {self.streaming["features"]: feats,
                                      **{st["input"]: t for st, t in zip(self.streaming["states"], state["tensors"])}})
        n = len(self.outputs) - len(self.streaming["states"])
        return dict(zip(self.outputs[:n], got[:n])), {"audio": cache, "tensors": got[n:]}

    def _need_streaming(self) -> None:
        if self.streaming is None:
            raise ValueError("this model is not a streaming export (a micro student's): it takes whole windows; "
                             "run it with run() or a Detector")

    def _need(self, name: str) -> None:
        if name not in self.outputs:
            raise ValueError(f"this model has no '{name}' output (it is a '{self.metadata.get('kind')}' "
                             "export): export a fine-tuned multi-task model for keywords and speakers")

    # ---- keyword spotting ---------------------------------------------------------------
    def keyword(self, audio, sample_rate: int | None = None) -> tuple[str, dict[str, float]]:
        """(best label, {label: probability}) for one clip."""
        self._need("keyword_logits")
        p = softmax(self.run(audio, sample_rate)["keyword_logits"][0])
        return self.labels[int(p.argmax())], {lab: float(v) for lab, v in zip(self.labels, p)}

    # ---- speaker verification -----------------------------------------------------------
    def embed(self, audio, sample_rate: int | None = None) -> np.ndarray:
        """L2-normalised speaker embedding [dim] of one clip ([batch, dim] for a batch)."""
        self._need("speaker_embedding")
        e = self.run(audio, sample_rate)["speaker_embedding"]
        return e[0] if e.shape[0] == 1 else e

    def verify(self, a, b, threshold: float | None = None) -> dict:
        """Cosine score of two clips and the decision at `threshold` (default: the one chosen
        on validation data at export time)."""
        thr = self.threshold if threshold is None else threshold
        if thr is None:
            raise ValueError("the model carries no SV threshold: pass threshold=...")
        score = float(np.dot(self.embed(a), self.embed(b)))
        return {"score": score, "same_speaker": score >= thr, "threshold": float(thr)}

    def enroll(self, name: str, clips: list) -> np.ndarray:
        """Stores the mean embedding of `clips` as speaker `name`; returns it."""
        if not clips:
            raise ValueError(f"enroll('{name}') needs at least one clip")
        e = np.mean([self.embed(c) for c in clips], axis=0)
        self.speakers[name] = e / np.linalg.norm(e)
        return self.speakers[name]

    def identify(self, audio, threshold: float | None = None) -> tuple[str | None, float]:
        """(closest enrolled speaker, score); the name is None below the threshold."""
        if not self.speakers:
            raise ValueError("no speaker is enrolled: call enroll(name, clips) first")
        e = self.embed(audio)
        name, score = max(((n, float(np.dot(e, v))) for n, v in self.speakers.items()), key=lambda t: t[1])
        thr = self.threshold if threshold is None else threshold
        return (name if thr is None or score >= thr else None), score


class HopStepper:
    """A streaming `EdgeModel` stepped through one stream, a hop of `hop` samples at a time, with
    preallocated buffers bound to onnxruntime once (IO binding: no per-call allocation or copy of
    the state); what `Detector` runs every hop. The outputs it returns are overwritten by the next
    call: copy what must outlive it.

        stepper = HopStepper(model, 1600)
        out = stepper(chunk_of_1600_samples)   # {"keyword_logits": [1, labels], ...}
    """

    def __init__(self, model: EdgeModel, hop: int):
        model._need_streaming()
        if hop % model.frame_samples:
            raise ValueError(f"a hop of {hop} samples is not a whole number of {model.frame_samples}-sample frames")
        spec, session = model.streaming, model.session
        self.model, self.hop = model, hop
        self.features = np.zeros((1, hop // model.frontend.spec.hop_length, model.frontend.spec.n_mels), np.float32)
        states = spec["states"]
        self._buffers = [[np.zeros((1, *st["shape"]), np.float32) for st in states] for _ in range(2)]
        n = len(model.outputs) - len(states)
        shapes = {o.name: [1, *o.shape[1:]] for o in session.get_outputs()[:n]}
        self.outputs = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
        self._bindings = []
        for k in range(2):  # ping-pong: the state read from one set is written into the other
            b = session.io_binding()
            b.bind_cpu_input(spec["features"], self.features)
            for st, buf in zip(states, self._buffers[k]):
                b.bind_cpu_input(st["input"], buf)
            for name, buf in self.outputs.items():
                b.bind_output(name, "cpu", 0, np.float32, buf.shape, buf.ctypes.data)
            for st, buf in zip(states, self._buffers[1 - k]):
                b.bind_output(st["output"], "cpu", 0, np.float32, buf.shape, buf.ctypes.data)
            self._bindings.append(b)
        self.reset()

    def reset(self) -> None:
        """A fresh stream: every state at zero."""
        for bufs in self._buffers:
            for b in bufs:
                b.fill(0.0)
        self._k = 0
        self._audio = self.model.frontend.initial_cache(1)

    def __call__(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs for the next `hop` samples [hop] of the stream."""
        feats, self._audio = self.model.frontend(audio.reshape(1, -1), self._audio)
        self.features[...] = feats
        self.model.session.run_with_iobinding(self._bindings[self._k])
        self._k ^= 1
        return self.outputs
