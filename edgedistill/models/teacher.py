"""Teachers: any Hugging Face speech SSL model (HuBERT, wav2vec 2.0, WavLM, data2vec-audio) or
Whisper's encoder (`edgedistill.models.whisper`: it computes its log-mel features itself, on clips
of any length), frozen, in eval mode, returning all hidden states with HF indexing (0 = encoder
input, i = output of layer i).

Eval mode is a deliberate choice: the official DistilHuBERT trainer leaves the teacher's
dropout on, which only adds noise to the targets.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from edgedistill.config import ConfigError
from edgedistill.models.hub import TeacherNotFoundError, find_pretrained  # noqa: F401 (public here too)
from edgedistill.models.micro import MODEL_TYPE as MICRO_MODEL_TYPE, register as register_micro

# The speech SSL families: a CNN on the waveform, then a transformer (students are built in these).
SPEECH_MODEL_TYPES = ("hubert", "wav2vec2", "wavlm", "data2vec-audio")
# What a teacher may be: those, or Whisper's encoder (its students are HuBERT-shaped).
TEACHER_MODEL_TYPES = SPEECH_MODEL_TYPES + ("whisper",)  # and a backbone may be a micro student:
LOADABLE_MODEL_TYPES = TEACHER_MODEL_TYPES + (MICRO_MODEL_TYPE,)
# Whether each waveform is normalised (zero mean, unit variance): HuBERT / wav2vec 2.0 Base trained on raw ones.
_NORMALIZE_DEFAULT = dict(hubert=False, wav2vec2=False, wavlm=True, whisper=False, **{"data2vec-audio": True,
                                                                                      MICRO_MODEL_TYPE: False})


class NotASpeechModelError(ConfigError):
    """A model that loads but is not a speech SSL model (e.g. a text model as --teacher)."""


# Size fields only: every other field (layerdrop 0.1, dropouts, SpecAugment masks, norm
# types) keeps the `transformers` default, which is what real checkpoints ship with.
TINY_SIZE = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                 conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def tiny_config(model_type: str = "hubert", **overrides):
    """A tiny config of a speech SSL family (hidden 64, 4 layers, 32-channel CNN) for demos and tests.

    Only the size differs from the family's `transformers` defaults: layerdrop, dropouts,
    SpecAugment, `feat_extract_norm` and `do_stable_layer_norm` stay as real checkpoints have
    them. The CNN keeps the family's kernels and strides (400-sample receptive field, 20 ms frames).
    `model_type`: one of `SPEECH_MODEL_TYPES`; `overrides`: any config field.
    """
    from transformers import AutoConfig

    if model_type not in SPEECH_MODEL_TYPES:
        raise ValueError(f"model_type '{model_type}': use one of {SPEECH_MODEL_TYPES}")
    extra = {"num_buckets": 32, "max_bucket_distance": 100} if model_type == "wavlm" else {}
    return AutoConfig.for_model(model_type, **{**TINY_SIZE, **extra, **overrides})


def tiny_hubert_config(**overrides):
    """`tiny_config("hubert")`: the tiny HuBERT behind `builtin:hubert-tiny`."""
    return tiny_config("hubert", **overrides)


def hubert_base_config(**overrides):
    """HuBERT Base's shape (95M) with fresh weights: for parameter counts and speed."""
    from transformers import HubertConfig

    return HubertConfig(**overrides)


EMBEDDED_TEACHER = "embedded"
# Bump when a change to the training code changes the weights the recipe trains: the cache
# then builds the embedded teacher again instead of reusing another version's.
EMBEDDED_TEACHER_VERSION = 1
# The reference build's provenance (shipped; its weights are not).
EMBEDDED_REFERENCE = Path(__file__).resolve().parents[1] / "assets" / "embedded_teacher" / "PROVENANCE.json"


def embedded_teacher_recipe() -> Path:
    """`configs/embedded_teacher.yaml`, the recipe the embedded teacher is built from."""
    from edgedistill.config import shipped_recipe

    path = shipped_recipe("embedded_teacher")
    if path is None:
        raise TeacherNotFoundError("the embedded teacher's recipe (configs/embedded_teacher.yaml) is missing from "
                                   "this install: reinstall edgedistill")
    return path


def embedded_teacher_path() -> Path:
    """Where the embedded teacher (`teacher: embedded`, the demo's) is built, once per machine:
    a 4 x 128 HuBERT trained on a 200-speaker embedded corpus as a stand-in for a pretrained model
    (none can be downloaded offline). It lives in the cache (`EDGEDISTILL_CACHE`, default
    ~/.cache/edgedistill) under a name keyed by its recipe's settings and the trainer's version,
    so an edited recipe builds a new one. `edgedistill embedded-teacher` builds it; so does the first
    command that uses it."""
    import hashlib
    import json

    from edgedistill.config import load_yaml
    from edgedistill.data.corpus import default_cache_dir

    recipe = json.dumps(load_yaml(embedded_teacher_recipe().read_text()), sort_keys=True)  # not its comments
    key = hashlib.sha256(f"{recipe} v{EMBEDDED_TEACHER_VERSION}".encode())
    return default_cache_dir() / f"embedded-teacher-{key.hexdigest()[:12]}"


def embedded_teacher_built() -> bool:
    """Whether this machine has built the embedded teacher (its PROVENANCE.json is written last)."""
    return (embedded_teacher_path() / "PROVENANCE.json").is_file()


def embedded_teacher_reference() -> dict:
    """The reference build's PROVENANCE.json (shipped in the package; the weights are not): how
    the recipe trained on the reference machine, what it reached, and its weights' sha256. The
    README's demo numbers come from those weights."""
    import json

    return json.loads(EMBEDDED_REFERENCE.read_text())


def embedded_teacher_provenance() -> dict:
    """This machine's build's PROVENANCE.json: how it was trained, what it reached, its sha256
    and whether that is the reference's."""
    import json

    return json.loads((embedded_teacher_path() / "PROVENANCE.json").read_text())


def embedded_teacher_summary() -> str:
    """What the embedded teacher is, from its config and PROVENANCE.json (for reports)."""
    import json

    config = json.loads((embedded_teacher_path() / "config.json").read_text())
    prov = embedded_teacher_provenance()
    same = "the reference weights" if prov.get("same_as_reference") else "not the reference weights"
    return (f"a {config['num_hidden_layers']} x {config['hidden_size']} HuBERT built by edgedistill from its "
            f"recipe, trained on `{prov['data']}` for {prov['steps_done']} steps (best at {prov['best_step']}; "
            f"{same}), a stand-in for a pretrained model")


BUILTIN_TEACHERS = {
    # Randomly initialised (seeded) teachers that need no download. They let the pipeline and
    # the tests run offline; they are not pretrained models.
    "builtin:hubert-tiny": tiny_hubert_config,
    "builtin:hubert-base-random": hubert_base_config,
}


def as_speech_model(model: nn.Module) -> nn.Module:
    """`model` as the library calls speech models (waveform in, hidden states out): a Whisper
    model (`WhisperForConditionalGeneration`, `WhisperModel` or `WhisperEncoder`) becomes a
    `WhisperWave` over its encoder; anything else is returned as is."""
    from edgedistill.models.whisper import WhisperWave

    if isinstance(model, WhisperWave) or getattr(getattr(model, "config", None), "model_type", None) != "whisper":
        return model
    encoder = model.get_encoder() if hasattr(model, "get_encoder") else model
    return WhisperWave(encoder)


def is_whisper(model: nn.Module) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) == "whisper"


def teacher_frames(config, num_samples: int) -> int:
    """Frames a speech model of `config` gives for `num_samples` samples at 16 kHz: its CNN's, or
    Whisper's ceil((samples // 160) / 2)."""
    from edgedistill.audio import num_frames

    if config.model_type == "whisper":
        return -(-(num_samples // 160) // 2)
    return num_frames(num_samples, config.conv_kernel, config.conv_stride)


class Teacher(nn.Module):
    """A frozen speech model.

    Args:
        model: a `transformers` speech model (HubertModel, Wav2Vec2Model, WavLMModel,
            Data2VecAudioModel) or a Whisper model (its encoder is used, on waveforms).
        do_normalize: whether the model expects each waveform normalised to zero mean and
            unit variance (from its feature extractor config).
    """

    def __init__(self, model: nn.Module, do_normalize: bool = False):
        super().__init__()
        self.dtype = torch.float32
        model = as_speech_model(model)
        model_type = getattr(model.config, "model_type", None)
        if model_type not in LOADABLE_MODEL_TYPES:
            raise NotASpeechModelError(f"teacher model_type '{model_type}' is not a supported speech SSL model "
                                       f"or Whisper; use one of {TEACHER_MODEL_TYPES}")
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.do_normalize = do_normalize

    @property
    def config(self):
        return self.model.config

    def train(self, mode: bool = True):  # the teacher always stays in eval mode
        return super().train(False)

    def set_precision(self, precision: str) -> "Teacher":
        """Runs the teacher in `precision` ("fp32", "bf16", "fp16"): its weights are cast, once.

        Raises:
            ConfigError: fp16 on a CPU, or a precision this device cannot run (probed).
        """
        if precision not in TEACHER_PRECISIONS:
            raise ConfigError(f"teacher_precision '{precision}': choose one of {tuple(TEACHER_PRECISIONS)}")
        device = next(self.model.parameters()).device
        check_precision(precision, device)
        self.dtype = TEACHER_PRECISIONS[precision]
        self.model.to(self.dtype)
        return self

    def frames(self, num_samples: int) -> int:
        """Hidden-state frames for a clip of `num_samples` samples."""
        return teacher_frames(self.config, num_samples)

    def _no_cnn(self, what: str) -> None:
        if is_whisper(self.model):
            raise ConfigError(f"{what}: a Whisper teacher has no waveform CNN to share with the student (its "
                              "convolutions read log-mel frames): set distill.reuse_teacher_cnn=false")

    @torch.no_grad()
    def cnn_features(self, wave: torch.Tensor) -> torch.Tensor:
        """CNN output [batch, channels, frames] for waveforms [batch, samples], in float32."""
        self._no_cnn("reuse_teacher_cnn")
        with torch.autocast(device_type=wave.device.type, enabled=False):
            x = prepare_input(wave.float(), self.do_normalize).to(self.dtype)
            return self.model.feature_extractor(x).float()

    @torch.no_grad()
    def forward(self, wave: torch.Tensor, features: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """All hidden states, each [batch, frames, hidden], HF indexing.

        Args:
            wave: float waveforms [batch, samples] at 16 kHz, zero-padded.
            features: optional precomputed CNN output (from `cnn_features`) to skip the CNN.
        """
        # The teacher runs in its own precision (fp32 unless set_precision), never under the
        # student's autocast. Hidden states come back in that precision.
        if features is not None:
            self._no_cnn("precomputed CNN features")
        with torch.autocast(device_type=wave.device.type, enabled=False):
            x = prepare_input(wave.float(), self.do_normalize).to(self.dtype)
            if features is not None:
                features = features.to(self.dtype)
            with cnn_override(self.model, features):
                out = self.model(x, output_hidden_states=True)
        return out.hidden_states


TEACHER_PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device | str) -> None:
    """Refuses a teacher precision the device cannot run, before any work is done.

    fp16 is refused on a CPU (slow there, and its range overflows in HuBERT's CNN); bf16
    on a GPU without bf16; anything else is probed with the teacher's operations (a strided
    convolution, group and layer norm, GELU, a matrix product, scaled dot-product attention).
    """
    import torch.nn.functional as F

    device = torch.device(device)
    if precision == "fp32":
        return
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("teacher_precision=fp16 runs on GPUs only: on a CPU use bf16 (or fp32)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"teacher_precision=bf16: {torch.cuda.get_device_name(device)} has no bf16; "
                          "use fp16 or fp32")
    dtype = TEACHER_PRECISIONS[precision]
    try:
        x = torch.randn(2, 1, 1600, device=device, dtype=dtype)
        y = F.gelu(F.group_norm(F.conv1d(x, torch.randn(8, 1, 10, device=device, dtype=dtype), stride=5), 8))
        y = F.layer_norm(y.transpose(1, 2), (8,)) @ torch.randn(8, 8, device=device, dtype=dtype)
        q = y.reshape(2, 1, -1, 8)
        F.scaled_dot_product_attention(q, q, q)
    except (RuntimeError, NotImplementedError) as exc:
        raise ConfigError(f"teacher_precision={precision} is not supported on {device} "
                          f"({str(exc).splitlines()[0][:120]}): use fp32") from exc


def prepare_input(wave: torch.Tensor, do_normalize: bool) -> torch.Tensor:
    """Per-utterance zero-mean/unit-variance normalisation when the model expects it."""
    if not do_normalize:
        return wave
    mean = wave.mean(dim=-1, keepdim=True)
    var = wave.var(dim=-1, keepdim=True, unbiased=False)
    return (wave - mean) / torch.sqrt(var + 1e-7)


class _Precomputed(nn.Module):
    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.features = features

    def forward(self, _):
        return self.features


@contextlib.contextmanager
def cnn_override(model: nn.Module, features: torch.Tensor | None):
    """Makes `model` use precomputed CNN `features` instead of running its own CNN."""
    if features is None:
        yield
        return
    original = model.feature_extractor
    model.feature_extractor = _Precomputed(features)
    try:
        yield
    finally:
        model.feature_extractor = original


def _read_do_normalize(path_or_id: str, model_type: str, **kw) -> bool:
    try:
        from transformers import AutoFeatureExtractor

        fe = AutoFeatureExtractor.from_pretrained(path_or_id, **kw)
        return bool(getattr(fe, "do_normalize", _NORMALIZE_DEFAULT[model_type]))
    except (OSError, ValueError):
        return _NORMALIZE_DEFAULT[model_type]


def load_teacher(id_or_path: str | nn.Module, *, seed: int = 0,
                 do_normalize: bool | None = None, flag: str = "--teacher", what: str = "teacher") -> Teacher:
    """Loads a frozen teacher by hub id, local path, builtin name or in-memory model.

    Looks in the local Hugging Face cache first, then the hub (unless `HF_HUB_OFFLINE=1`).
    Never uses `trust_remote_code`.

    Args:
        id_or_path: e.g. "facebook/hubert-base-ls960", "/models/hubert", a `BUILTIN_TEACHERS`
            name, "embedded" (`embedded_teacher_path`) or a `transformers` speech model.
        seed: seed of the random weights of a builtin teacher.
        do_normalize: override the waveform normalisation read from the feature extractor.

    Raises:
        TeacherNotFoundError: the id or path cannot be found (offline or misspelt).
        ValueError: the model is not a speech SSL model.
    """
    if isinstance(id_or_path, Teacher):
        return id_or_path
    if isinstance(id_or_path, nn.Module):
        id_or_path = as_speech_model(id_or_path)
        mt = id_or_path.config.model_type
        return Teacher(id_or_path, _NORMALIZE_DEFAULT.get(mt, False) if do_normalize is None else do_normalize)
    name = str(id_or_path)
    if name in BUILTIN_TEACHERS:
        from transformers import AutoModel

        torch.manual_seed(seed)
        model = AutoModel.from_config(BUILTIN_TEACHERS[name]())
        return Teacher(model, bool(do_normalize))
    if name.startswith("builtin:"):
        raise TeacherNotFoundError(f"unknown builtin teacher '{name}'; available: "
                                   f"{sorted(BUILTIN_TEACHERS)}")
    return Teacher(*_from_pretrained(name, do_normalize, flag, what))


def find_speech_config(name: str, flag: str = "--teacher", what: str = "teacher"):
    """(source, from_pretrained kwargs, config) of a speech SSL model by builtin name, folder or
    hub id: one lookup with one clean error for every command.

    Raises:
        TeacherNotFoundError: not found (missing folder, no config.json, offline hub id).
        NotASpeechModelError: found, but e.g. a text model.
    """
    if name in BUILTIN_TEACHERS:
        return name, {}, BUILTIN_TEACHERS[name]()
    if name.startswith("builtin:"):
        raise TeacherNotFoundError(f"unknown builtin teacher '{name}'; available: {sorted(BUILTIN_TEACHERS)}")
    if name == EMBEDDED_TEACHER:
        name = str(embedded_teacher_path())
        if not embedded_teacher_built():
            raise TeacherNotFoundError(f"the embedded teacher is not built on this machine yet ({name}): build "
                                       "it once with `edgedistill embedded-teacher` (the `edgedistill` commands that "
                                       "name it build it first on their own; from Python, distill(), finetune() and "
                                       "run() do not)")
    register_micro()
    src, kw, config = find_pretrained(name, what=what, flag=flag)
    if getattr(config, "model_type", None) not in LOADABLE_MODEL_TYPES:
        raise NotASpeechModelError(f"'{name}' is a '{config.model_type}' model, not a speech SSL model or Whisper "
                                   f"(supported: {', '.join(TEACHER_MODEL_TYPES)}); pass a speech model to {flag}")
    return src, kw, config


def load_speech_model(src: str | Path, config=None, **kw) -> nn.Module:
    """The speech model saved in folder (or hub id) `src`: `AutoModel` for the waveform families,
    `WhisperWave` (the encoder alone, on waveforms) for Whisper. Never `trust_remote_code`."""
    from transformers import AutoConfig, AutoModel

    register_micro()  # AutoConfig / AutoModel know a saved micro student
    config = config or AutoConfig.from_pretrained(src, trust_remote_code=False, **kw)
    if config.model_type == "whisper":
        from edgedistill.models.whisper import load_whisper_wave

        folder = Path(src)
        if not folder.is_dir():  # a hub id: its snapshot in the local cache (or downloaded)
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(src), local_files_only=kw.get("local_files_only", False),
                                            allow_patterns=["*.json", "*.safetensors", "pytorch_model.bin"]))
        return load_whisper_wave(folder, config)
    return AutoModel.from_pretrained(src, trust_remote_code=False, **kw)


def _from_pretrained(name: str, do_normalize: bool | None, flag: str = "--teacher", what: str = "teacher"):
    src, kw, config = find_speech_config(name, flag, what)
    model = load_speech_model(src, config, **kw)
    if do_normalize is None:
        do_normalize = _read_do_normalize(src, config.model_type, **kw)
    return model, do_normalize
