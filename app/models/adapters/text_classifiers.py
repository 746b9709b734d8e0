"""Text classifiers: ``text-topic-classifier`` (zero-shot MiniLM), ``text-sentiment`` (VADER)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .base import (
    WEIGHTS_DIR,
    AdapterInput,
    ModelAdapter,
    ModelConcept,
    Prediction,
    check_text,
    softmax,
)

MINILM_FILE = WEIGHTS_DIR / "minilm_l6_v2.onnx"
TOKENIZER_FILE = WEIGHTS_DIR / "minilm_tokenizer.json"
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


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
    else from config ``concepts``. Config: ``top_k`` (default: all), ``template``,
    ``temperature``, ``scoring``, ``sigmoid_center``, ``sigmoid_scale``,
    ``intra_op_num_threads`` (default 2).
    """

    name = "text-topic-classifier"
    kind = "TEXT_CLASSIFIER"

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.template = str(self.config.get("template", "This text is about {name}."))
        self.temperature = float(self.config.get("temperature", 0.05))
        self.scoring = str(self.config.get("scoring", "softmax"))
        if self.scoring not in ("softmax", "sigmoid"):
            raise ValueError(f"{self.name}: scoring must be 'softmax' or 'sigmoid'")
        self.sigmoid_center = float(self.config.get("sigmoid_center", 0.10))
        self.sigmoid_scale = float(self.config.get("sigmoid_scale", 0.05))
        top_k = self.config.get("top_k")
        self.top_k = int(top_k) if top_k is not None else None
        self.default_concepts = [str(c) for c in self.config.get("concepts", [])]
        self._session: Any = None
        self._tokenizer: Any = None
        self._concept_cache: dict[str, np.ndarray] = {}
        self._cache_lock = threading.Lock()

    def concepts(self) -> list[ModelConcept]:
        return [ModelConcept(id=c, name=c) for c in self.default_concepts]

    def _load(self) -> None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(TOKENIZER_FILE))
        tok.enable_truncation(MAX_TOKENS)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tok
        self._session = self.make_session(MINILM_FILE)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised sentence embeddings, shape ``(len(texts), 384)``."""
        self.ensure_loaded()
        if not texts:
            return np.zeros((0, 384), np.float32)
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
        if not batch:
            return []
        texts = [check_text(item, self.name) for item in batch]
        names = list(dict.fromkeys(str(c) for c in (concepts or self.default_concepts)))
        if not names:
            raise ValueError(f"{self.name}: zero-shot model needs concept names to score")
        sims = self.embed(texts) @ self._concept_embeddings(names).T  # (texts, concepts)
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
        return out


class SentimentAdapter(ModelAdapter):
    """VADER lexicon sentiment: concepts ``positive`` / ``negative`` / ``neutral``.

    From VADER's ``compound`` score c in [-1, 1]: positive = max(c, 0), negative = max(-c, 0),
    neutral = 1 - |c| (the three sum to 1); predictions are sorted best first and the raw
    VADER scores are in ``extra``. VADER's usual cut-offs (c >= 0.05 positive, c <= -0.05
    negative) correspond to the top prediction in all but borderline cases.
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
