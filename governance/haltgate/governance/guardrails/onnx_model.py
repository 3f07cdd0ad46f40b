"""Model stage of the injection detector: a fine-tuned MiniLM classifier run by onnxruntime.

The model is the int8 ONNX MiniLM classifier that the ``stackone-defender`` package ships
(Apache-2.0, ``models/minilm-multihead-v5``: tokenizer.json, model_quantized.onnx,
classifier_config.json). Only its files are read, by path; the package's own code is not
imported, nothing is downloaded, and no PyTorch is involved: onnxruntime and tokenizers run
it on one thread. Its output has two logits per window (main: injection; auxiliary: text
that discusses injections); the score is sigmoid(main / T) with the temperature T of the
model's own calibration, and a text's score is its highest window's.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haltgate.governance.guardrails import normalize
from haltgate.governance.guardrails.model import ModelUnavailable

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
MODEL_SUBDIR = ("models", "minilm-multihead-v5")
BLOCK_AT = 0.95
"""Blocking threshold, chosen on validation splits only (bench/injection_model_choice.py and
docs/guardrails.md section 6): the smallest of 0.80..0.98 keeping false positives <= 1 % on
the pooled benign texts of s-labs and neuralchemy validation plus the own benign corpus."""
ADVISORY_AT = 0.7
"""From here to BLOCK_AT a model finding is advisory (audited, adds risk, never blocks)."""


def default_model_dir() -> Path:
    """The model folder inside the installed ``stackone-defender`` package (not imported)."""
    spec = importlib.util.find_spec("stackone_defender")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "the model stage needs the stackone-defender package "
            "(pip install 'haltgate[guard-model]')"
        )
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*MODEL_SUBDIR)


@dataclass(frozen=True, slots=True)
class WindowSettings:
    max_tokens: int = 256
    """Window length in tokens (the model's training length)."""
    max_windows: int = 16
    """At most this many windows of a text are scored (the first ones)."""


class OnnxInjectionScorer:
    """Callable text -> injection probability, for `InjectionDetector(model=...)`."""

    def __init__(self, model_dir: Path, settings: WindowSettings = WindowSettings()) -> None:
        try:
            import numpy as np
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ModelUnavailable(
                "the model stage needs onnxruntime, tokenizers and numpy "
                "(pip install 'haltgate[guard-model]')"
            ) from e
        files = {
            n: model_dir / n
            for n in ("tokenizer.json", "model_quantized.onnx", "classifier_config.json")
        }
        missing = [n for n, p in files.items() if not p.is_file()]
        if missing:
            raise ModelUnavailable(f"{model_dir}: missing {', '.join(missing)}")
        self._np = np
        self.settings = settings
        self.block_at = BLOCK_AT
        self.advisory_at = ADVISORY_AT
        try:
            self._tok = Tokenizer.from_file(str(files["tokenizer.json"]))
            config = json.loads(files["classifier_config.json"].read_text(encoding="utf-8"))
        except Exception as e:  # tokenizers raises a bare Exception on a malformed file
            raise ModelUnavailable(
                f"{model_dir}: unreadable tokenizer.json or "
                f"classifier_config.json ({type(e).__name__})"
            ) from e
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=settings.max_tokens)
        cls, sep = self._tok.token_to_id("[CLS]"), self._tok.token_to_id("[SEP]")
        if cls is None or sep is None:
            raise ModelUnavailable(f"{model_dir}: tokenizer has no [CLS]/[SEP] tokens")
        self._cls, self._sep = cls, sep
        self.temperature = float(config.get("calibration", {}).get("temperatureT", 1.0))
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ModelUnavailable(f"{model_dir}: calibration.temperatureT must be > 0")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # 2 shared cores; the executor bounds concurrency
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(files["model_quantized.onnx"]), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own types for a bad or foreign file
            raise ModelUnavailable(
                f"{files['model_quantized.onnx']}: not a loadable ONNX model ({type(e).__name__})"
            ) from e

    def windows(self, text: str) -> list[list[int]]:
        """Token ids of sentence-packed windows (with [CLS]/[SEP]), at most max_windows."""
        budget = self.settings.max_tokens - 2
        out: list[list[int]] = []
        cur: list[int] = []
        sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
        for enc in self._tok.encode_batch(sentences, add_special_tokens=False):
            ids = list(enc.ids)
            while ids:
                if cur and len(cur) + len(ids) > budget:
                    out.append(cur)
                    cur = []
                    if len(out) >= self.settings.max_windows:
                        return self._framed(out)
                take, ids = ids[: budget - len(cur)], ids[budget - len(cur) :]
                cur.extend(take)
        if cur and len(out) < self.settings.max_windows:
            out.append(cur)
        return self._framed(out)

    def _framed(self, windows: list[list[int]]) -> list[list[int]]:
        return [[self._cls, *w, self._sep] for w in windows]

    def __call__(self, text: str) -> float:
        """Probability-like score in [0, 1] that `text` carries an injection."""
        windows = self.windows(normalize.fold(text))
        if not windows:
            return 0.0
        np = self._np
        width = max(len(w) for w in windows)
        ids = np.zeros((len(windows), width), dtype=np.int64)
        mask = np.zeros((len(windows), width), dtype=np.int64)
        for i, w in enumerate(windows):
            ids[i, : len(w)] = w
            mask[i, : len(w)] = 1
        logits: Any = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        main = np.asarray(logits, dtype=np.float64).reshape(len(windows), -1)[:, 0]
        return float((1.0 / (1.0 + np.exp(-main / self.temperature))).max())


def load_default_scorer() -> OnnxInjectionScorer:
    """Scorer over the packaged model; raises `ModelUnavailable` without its packages."""
    return OnnxInjectionScorer(default_model_dir())
