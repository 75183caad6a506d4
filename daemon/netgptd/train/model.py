"""NetGPT as a torch module: a small GPT-2 built from scratch, never downloaded.

One backbone serves every task: as a causal LM (pretraining and traffic
generation, prompt ``[GEN] [APP=x]``) and as a classifier (prompt
``[CLS]``), where an application head and an attack head both read the
hidden state of the sequence's last real token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from netgptd.model.tokenizer import PAD


@dataclass(frozen=True)
class ModelShape:
    layers: int = 2
    width: int = 128
    heads: int = 4
    positions: int = 192

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class NetGPT(nn.Module):
    def __init__(self, shape: ModelShape, vocab: int, apps: int, attacks: int) -> None:
        super().__init__()
        self.shape = shape
        config = GPT2Config(
            vocab_size=vocab, n_positions=shape.positions, n_embd=shape.width, n_layer=shape.layers,
            n_head=shape.heads, pad_token_id=PAD, bos_token_id=PAD, eos_token_id=PAD,
            resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
        )  # fmt: skip
        self.lm = GPT2LMHeadModel(config)
        self.app_head = nn.Linear(shape.width, apps)
        self.attack_head = nn.Linear(shape.width, attacks)

    def lm_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss

    def classify(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.lm.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(dim=1) - 1
        state = hidden[torch.arange(hidden.shape[0]), last]
        return self.app_head(state), self.attack_head(state)


class ClassifierExport(nn.Module):
    """The classification path alone, as exported to ONNX."""

    def __init__(self, model: NetGPT) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.classify(input_ids, attention_mask)
