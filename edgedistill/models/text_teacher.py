"""Text teachers: any `transformers` text encoder (BERT-like), frozen, giving per-token,
per-word and sentence embeddings of transcripts.

    teacher = load_text_teacher("sentence-transformers/all-MiniLM-L6-v2")   # or a folder
    batch = teacher.encode(["turn left", "stop"])

Special tokens ([CLS], [SEP], padding) are not units: `tokens` holds only the transcript's
own sub-word tokens, `words` the mean of each word's sub-word embeddings (from the fast
tokenizer's word ids), and `sentence` the pooled embedding the model was trained to give
(sentence-transformers' `1_Pooling/config.json` when present: mean or CLS; mean otherwise).
Embeddings of a transcript are computed once and cached: keyword data repeats a few
transcripts thousands of times.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgedistill.models.teacher import TeacherNotFoundError, find_pretrained

TEXT_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet", "albert",
                    "deberta", "deberta-v2", "camembert", "ernie", "modernbert")

# A tiny random-weight BERT with a letter-level WordPiece vocabulary: tests and offline demos.
_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789'"
_BUILTIN_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "zero", "one",
                  "two", "three", "four", "five", "six", "seven", "eight", "nine", "open", "close", "in",
                  "out", "next", "back", "start", "turn", "the")
BUILTIN_TEXT_TEACHERS = ("builtin:bert-tiny",)


@dataclass
class TextBatch:
    """Text-teacher targets of a batch (padded; masks True on real entries).

    tokens [B, N, D], token_mask [B, N], token_ids [B, N]; words [B, W, D], word_mask [B, W];
    sentence [B, D]; has_text [B] (False: no transcript, e.g. a cropped clip);
    token_weight [B, N] the token prior (None: uniform), see `distill.text.token_prior`.
    """

    tokens: torch.Tensor
    token_mask: torch.Tensor
    token_ids: torch.Tensor
    words: torch.Tensor
    word_mask: torch.Tensor
    sentence: torch.Tensor
    has_text: torch.Tensor
    token_weight: torch.Tensor | None = None

    def to(self, device) -> "TextBatch":
        return TextBatch(**{k: (v.to(device) if v is not None else None) for k, v in vars(self).items()})

    def select(self, rows: torch.Tensor) -> "TextBatch":
        """The batch restricted to `rows` (a bool mask or indices)."""
        return TextBatch(**{k: (v[rows] if v is not None else None) for k, v in vars(self).items()})


class TextTeacher(nn.Module):
    """A frozen text encoder with its tokenizer.

    Args:
        model: a `transformers` encoder (`AutoModel`) returning `last_hidden_state`.
        tokenizer: its fast tokenizer (word ids are needed for word units).
        pooling: "mean" (over real tokens, specials included, as sentence-transformers) or "cls".
    """

    def __init__(self, model: nn.Module, tokenizer, pooling: str = "mean"):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling '{pooling}': use 'mean' or 'cls'")
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("the text teacher needs a fast tokenizer (word ids for word units); "
                             "save the model with a tokenizer.json")
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.tokenizer, self.pooling = tokenizer, pooling
        self._cache: dict[str, tuple[torch.Tensor, ...]] = {}

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def train(self, mode: bool = True):  # always eval
        return super().train(False)

    @torch.no_grad()
    def _embed(self, texts: list[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if not todo:
            return
        enc = self.tokenizer(todo, padding=True, truncation=True, return_tensors="pt")
        device = next(self.model.parameters()).device
        hidden = self.model(**{k: v.to(device) for k, v in enc.items()
                               if k in ("input_ids", "attention_mask", "token_type_ids")}).last_hidden_state.float().cpu()
        special = set(self.tokenizer.all_special_ids)
        for i, text in enumerate(todo):
            attn = enc["attention_mask"][i].bool()
            if self.pooling == "cls":
                sentence = hidden[i, 0]
            else:
                sentence = hidden[i][attn].mean(0)
            ids = enc["input_ids"][i]
            keep = [j for j in range(len(ids)) if attn[j] and int(ids[j]) not in special]
            word_ids = enc.word_ids(i)
            groups: dict[int, list[int]] = {}
            for j in keep:
                groups.setdefault(word_ids[j] if word_ids[j] is not None else -j, []).append(j)
            words = torch.stack([hidden[i, js].mean(0) for js in groups.values()]) if groups else hidden.new_zeros(0, hidden.shape[-1])
            self._cache[text] = (hidden[i, keep], ids[keep], words, sentence)

    def encode(self, texts: list[str | None]) -> TextBatch:
        """Targets for a batch of transcripts (None or "" for a clip without one)."""
        real = [t for t in texts if t]
        self._embed(real)
        d = self.dim
        items = [self._cache[t] if t else (torch.zeros(0, d), torch.zeros(0, dtype=torch.long),
                                           torch.zeros(0, d), torch.zeros(d)) for t in texts]
        n = max(1, max(len(it[0]) for it in items))
        w = max(1, max(len(it[2]) for it in items))
        b = len(texts)
        out = TextBatch(torch.zeros(b, n, d), torch.zeros(b, n, dtype=torch.bool), torch.zeros(b, n, dtype=torch.long),
                        torch.zeros(b, w, d), torch.zeros(b, w, dtype=torch.bool), torch.zeros(b, d),
                        torch.tensor([bool(t) for t in texts]))
        for i, (tok, ids, words, sent) in enumerate(items):
            out.tokens[i, :len(tok)], out.token_mask[i, :len(tok)], out.token_ids[i, :len(ids)] = tok, True, ids
            out.words[i, :len(words)], out.word_mask[i, :len(words)] = words, True
            out.sentence[i] = sent
        return out

    def token_counts(self, texts: list[str]) -> dict[int, int]:
        """How often each (non-special) token occurs in `texts`: the frequency prior's counts."""
        counts: dict[int, int] = {}
        special = set(self.tokenizer.all_special_ids)
        for t in texts:
            for i in self.tokenizer(t)["input_ids"]:
                if i not in special:
                    counts[i] = counts.get(i, 0) + 1
        return counts


def builtin_text_teacher(seed: int = 0, hidden: int = 32, layers: int = 2) -> TextTeacher:
    """`builtin:bert-tiny`: a seeded random-weight BERT over a letter-level WordPiece vocabulary
    (any lower-case word tokenizes). For tests and offline smoke runs; not a pretrained model."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_LETTERS, *(f"##{c}" for c in _LETTERS), *_BUILTIN_WORDS]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                                 num_attention_heads=max(1, hidden // 16), intermediate_size=2 * hidden,
                                 max_position_embeddings=128), add_pooling_layer=False)
    return TextTeacher(model, tokenizer)


def load_text_teacher(id_or_path: str | TextTeacher, *, seed: int = 0, pooling: str | None = None) -> TextTeacher:
    """Loads a frozen text teacher by hub id, local folder or `builtin:bert-tiny`.

    Looks in the local Hugging Face cache first, then the hub (unless `HF_HUB_OFFLINE=1`).
    Never uses `trust_remote_code`.

    Raises:
        TeacherNotFoundError: the id or path cannot be found (offline or misspelt).
        ValueError: the model is not a text encoder, or has no fast tokenizer.
    """
    if isinstance(id_or_path, TextTeacher):
        return id_or_path
    name = str(id_or_path)
    if name in BUILTIN_TEXT_TEACHERS:
        return builtin_text_teacher(seed)
    if name.startswith("builtin:"):
        raise TeacherNotFoundError(f"unknown builtin text teacher '{name}'; available: {BUILTIN_TEXT_TEACHERS}")
    from transformers import AutoModel, AutoTokenizer

    src, kw, config = find_pretrained(name, "text teacher", "--text-teacher")
    local = Path(src)
    if config.model_type not in TEXT_MODEL_TYPES:
        raise ValueError(f"'{name}' is a '{config.model_type}' model, not a text encoder; "
                         f"supported: {TEXT_MODEL_TYPES}")
    tokenizer = AutoTokenizer.from_pretrained(src, trust_remote_code=False, use_fast=True, **kw)
    model = AutoModel.from_pretrained(src, trust_remote_code=False, **kw)
    if pooling is None:
        pooling = _st_pooling(local) if local.exists() else "mean"
    return TextTeacher(model, tokenizer, pooling)


def _st_pooling(folder: Path) -> str:
    """sentence-transformers' pooling mode (1_Pooling/config.json), else mean."""
    cfg = folder / "1_Pooling" / "config.json"
    if cfg.exists():
        c = json.loads(cfg.read_text())
        if c.get("pooling_mode_cls_token"):
            return "cls"
    return "mean"
