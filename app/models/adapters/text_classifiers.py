"""Text classifiers: ``text-topic-classifier`` (zero-shot MiniLM), ``text-sentiment`` (VADER)."""

from __future__ import annotations

import string
import threading
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from app.core.errors import ErrorCode

from .base import (
    WEIGHTS_DIR,
    AdapterInput,
    ModelAdapter,
    ModelConcept,
    Prediction,
    check_text,
    softmax,
)
from .config import AdapterConfig, OnnxConfig
from .errors import InvalidConfig

MINILM_FILE = WEIGHTS_DIR / "minilm_l6_v2.onnx"
TOKENIZER_FILE = WEIGHTS_DIR / "minilm_tokenizer.json"
EMBEDDING_DIM = 384
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
MAX_TOPICS = 1_000  # config concepts: each one is embedded once per adapter
MAX_TEMPLATE = 500


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


class TextTopicConfig(OnnxConfig):
    template: str = Field(
        "This text is about {name}.",
        min_length=1,
        max_length=MAX_TEMPLATE,
        description="the hypothesis per concept; holds {name} and no other placeholder",
    )
    temperature: float = Field(0.05, ge=0.001, le=10.0, description="softmax temperature")
    scoring: Literal["softmax", "sigmoid"] = Field("softmax", description="softmax or sigmoid")
    sigmoid_center: float = Field(0.10, ge=-1.0, le=1.0, description="cosine scored 0.5")
    sigmoid_scale: float = Field(0.05, ge=0.001, le=10.0, description="sigmoid width")
    top_k: int | None = Field(None, ge=1, le=MAX_TOPICS, description="best concepts kept; default all")
    concepts: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=MAX_TOPICS,
        description="names scored when a task gives none; needed unless zero-shot",
    )

    @field_validator("template")
    @classmethod
    def _one_placeholder(cls, value: str) -> str:
        """Only ``{name}``: a format spec such as ``{name:>99999999}`` would cost memory, and an
        unknown field would fail every batch."""
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise PydanticCustomError("invalid", "template: {error}", {"error": str(exc)}) from None
        fields = [(f, spec, conv) for _, f, spec, conv in parsed if f is not None]
        if not fields or any(f != "name" or spec or conv for f, spec, conv in fields):
            raise PydanticCustomError("invalid", "template must hold {name} and no other placeholder")
        return value


class TextTopicAdapter(ModelAdapter):
    """Zero-shot topic classifier over arbitrary concept names.

    Each text and each hypothesis ``template.format(name=concept)`` ("This text is about
    {name}.") are embedded with all-MiniLM-L6-v2 (mean pooling, L2-normalised); the cosine
    similarity scores each concept. Confidence:

    * ``scoring="softmax"`` (default, used when 2+ concepts are scored): softmax over the
      concepts of ``cos / temperature`` (``temperature`` default 0.05), so confidences sum
      to 1 and the best-matching topic stands out (raw cosines are small: 0.1-0.3 for a
      matching topic, around 0 for an unrelated one);
    * ``scoring="sigmoid"`` (always used for a single concept, where a softmax would be 1):
      ``sigmoid((cos - sigmoid_center) / sigmoid_scale)`` with center 0.10, scale 0.05, an
      independent per-concept score.

    The raw cosine is in ``extra["similarity"]``. Concepts come from ``predict(concepts=...)``,
    else from config ``concepts``. Config: ``TextTopicConfig`` (defaults and bounds there).
    """

    name = "text-topic-classifier"
    kind = "TEXT_CLASSIFIER"
    zero_shot = True
    config_schema = TextTopicConfig
    options: TextTopicConfig

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        opts = self.options
        self.template = opts.template
        self.temperature = opts.temperature
        self.scoring = opts.scoring
        self.sigmoid_center = opts.sigmoid_center
        self.sigmoid_scale = opts.sigmoid_scale
        self.top_k = opts.top_k
        self.default_concepts = list(opts.concepts)
        self._session: Any = None
        self._tokenizer: Any = None
        self._concept_cache: dict[str, np.ndarray] = {}
        self._cache_lock = threading.Lock()

    @classmethod
    def check_model(cls, kind: str, options: AdapterConfig, zero_shot: bool | None) -> None:
        super().check_model(kind, options, zero_shot)
        if zero_shot is False and not getattr(options, "concepts", None):
            raise InvalidConfig(
                "a topic model that is not zero-shot scores config.concepts: give them",
                field="config.concepts",
                code=ErrorCode.REQUIRED,
            )

    def concepts(self) -> list[ModelConcept]:
        return [ModelConcept(id=c, name=c) for c in self.default_concepts]

    def _load(self) -> None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(TOKENIZER_FILE))
        tok.enable_truncation(MAX_TOKENS)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tok
        self._session = self.shared_session(MINILM_FILE)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised sentence embeddings, shape ``(len(texts), 384)``."""
        self.ensure_loaded()
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        enc = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        out = self._session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
        return np.asarray(out, np.float32)

    def _concept_embeddings(self, names: Sequence[str]) -> np.ndarray:
        missing = [n for n in dict.fromkeys(names) if n not in self._concept_cache]
        if missing:
            vecs = self.embed([self.template.format(name=n) for n in missing])
            with self._cache_lock:
                if len(self._concept_cache) > 10_000:
                    self._concept_cache.clear()
                self._concept_cache.update(zip(missing, vecs, strict=True))
        return np.stack([self._concept_cache[n] for n in names])

    def predict(
        self, batch: Sequence[AdapterInput], concepts: Sequence[str] | None = None
    ) -> list[list[Prediction]]:
        return self.predict_with_features(batch, concepts)[0]

    def predict_with_features(
        self, batch: Sequence[AdapterInput], concepts: Sequence[str] | None = None
    ) -> tuple[list[list[Prediction]], np.ndarray]:
        """``predict`` and the texts' sentence embeddings it scored with (``embed``: the same
        session run, so a caller that wants both pays once)."""
        if not batch:
            return [], np.zeros((0, EMBEDDING_DIM), np.float32)
        texts = [check_text(item, self.name) for item in batch]
        names = list(dict.fromkeys(str(c) for c in (concepts or self.default_concepts)))
        if not names:
            raise ValueError(f"{self.name}: zero-shot model needs concept names to score")
        embedded = self.embed(texts)
        sims = embedded @ self._concept_embeddings(names).T  # (texts, concepts)
        if self.scoring == "softmax" and len(names) > 1:
            conf = softmax(sims.astype(np.float64) / self.temperature, axis=1)
        else:
            conf = _sigmoid((sims.astype(np.float64) - self.sigmoid_center) / self.sigmoid_scale)
        out = []
        for row_sims, row_conf in zip(sims, conf, strict=True):
            order = np.argsort(-row_conf)
            if self.top_k is not None:
                order = order[: self.top_k]
            out.append(
                [
                    Prediction(
                        concept=names[i],
                        confidence=float(row_conf[i]),
                        extra={"similarity": float(row_sims[i])},
                    )
                    for i in order
                ]
            )
        return out, embedded


class SentimentAdapter(ModelAdapter):
    """VADER lexicon sentiment: concepts ``positive`` / ``negative`` / ``neutral``.

    From VADER's ``compound`` score c in [-1, 1]: positive = max(c, 0), negative = max(-c, 0),
    neutral = 1 - |c| (the three sum to 1); predictions are sorted best first and the raw
    VADER scores are in ``extra``. VADER's usual cut-offs (c >= 0.05 positive, c <= -0.05
    negative) correspond to the top prediction in all but borderline cases. It takes no config
    (any key is refused).
    """

    name = "text-sentiment"
    kind = "TEXT_CLASSIFIER"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self._analyzer: Any = None

    def concepts(self) -> list[ModelConcept]:
        return [ModelConcept(id=c, name=c) for c in ("positive", "negative", "neutral")]

    def _load(self) -> None:
        from vaderSentiment.vaderSentiment import (  # type: ignore[import-untyped]
            SentimentIntensityAnalyzer,
        )

        self._analyzer = SentimentIntensityAnalyzer()

    def predict(
        self, batch: Sequence[AdapterInput], concepts: Sequence[str] | None = None
    ) -> list[list[Prediction]]:
        if not batch:
            return []
        texts = [check_text(item, self.name) for item in batch]
        self.ensure_loaded()
        out = []
        for text in texts:
            scores = self._analyzer.polarity_scores(text)
            c = float(scores["compound"])
            conf = {"positive": max(0.0, c), "negative": max(0.0, -c), "neutral": 1.0 - abs(c)}
            extra = {k: float(v) for k, v in scores.items()}
            out.append(
                [
                    Prediction(concept=k, confidence=v, extra=extra)
                    for k, v in sorted(conf.items(), key=lambda kv: -kv[1])
                ]
            )
        return out
