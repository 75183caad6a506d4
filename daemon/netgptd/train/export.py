"""From a trained NetGPT to a servable bundle: ONNX export, int8, manifest.

Export uses torch 2.13's torch.export-based exporter (``dynamo=True``).
The TorchScript exporter (``dynamo=False``) traces the transformers GPT-2
into a graph whose logits are wrong even on the trace's own inputs, and
asking the new exporter for opset 17 down-converts its native opset 18
into an invalid graph (``Split`` with ``num_outputs``), so opset 18 is
the default.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

from netgptd.model.bundle import (INPUTS, LM_FILE, LM_OUTPUTS, MANIFEST_FILE, MANIFEST_VERSION, MODEL_FILE, OUTPUTS,
                                  sha256_file)  # fmt: skip
from netgptd.model.thresholds import Thresholds
from netgptd.model.port_prior import PortPrior
from netgptd.model.tokenizer import CLS, EOS, FIRST_APP_TOKEN, GEN, PAD, PORT, TokenizerConfig
from netgptd.train.model import ClassifierExport, ModelShape, NetGPT

OPSET = 18
LM_PARITY_TOLERANCE = 1e-3  # largest |torch - onnxruntime| logit difference an exported LM may show


class LMExport(nn.Module):
    """The language-model path alone (generation): next-token logits at every position."""

    def __init__(self, model: NetGPT) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def export_onnx(model: NetGPT, path: str | Path, opset: int = OPSET) -> Path:
    """The classification path as one ONNX file, batch and sequence length dynamic."""
    path = Path(path)
    # Two rows of different lengths, both axes above 1: torch.export specialises sizes 0 and 1.
    ids = torch.tensor([[CLS, 1, 2, 3], [CLS, 4, 5, PAD]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=model.shape.positions)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and axis-naming chatter
            torch.onnx.export(
                ClassifierExport(model), (ids, mask), str(path), dynamo=True, external_data=False, verbose=False,
                input_names=list(INPUTS), output_names=list(OUTPUTS), opset_version=opset,
                dynamic_shapes={INPUTS[0]: {0: batch, 1: sequence}, INPUTS[1]: {0: batch, 1: sequence}},
            )  # fmt: skip
    finally:
        model.train(was_training)
    return path


def export_lm_onnx(model: NetGPT, path: str | Path, opset: int = OPSET) -> Path:
    """The LM head as one ONNX file (``logits`` [batch, sequence, vocab]), batch and sequence
    length dynamic, checked against torch before it is returned (``check_lm_parity``)."""
    path = Path(path)
    app = FIRST_APP_TOKEN
    ids = torch.tensor([[GEN, app, PORT, 1, 187, 9], [GEN, app, PORT, 0, 53, PAD]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=model.shape.positions)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                LMExport(model), (ids, mask), str(path), dynamo=True, external_data=False, verbose=False,
                input_names=list(INPUTS), output_names=list(LM_OUTPUTS), opset_version=opset,
                dynamic_shapes={INPUTS[0]: {0: batch, 1: sequence}, INPUTS[1]: {0: batch, 1: sequence}},
            )  # fmt: skip
        check_lm_parity(model, path)
    finally:
        model.train(was_training)
    return path


def check_lm_parity(model: NetGPT, path: str | Path, tolerance: float = LM_PARITY_TOLERANCE) -> float:
    """Run the exported LM and the torch one (eval mode) on the same random rows, of
    batch sizes 1 to 3 and lengths 1 to the model's positions; raise ``ValueError``
    when their logits differ by more than ``tolerance``. Returns the largest difference."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    vocab, positions = model.lm.config.vocab_size, model.shape.positions
    worst = 0.0
    was_training = model.training
    model.eval()
    try:
        for rows, length in ((1, 1), (3, 7), (2, positions)):
            ids = torch.randint(0, min(vocab, EOS + 1), (rows, length), generator=generator)
            ids[:, 0] = GEN
            mask = torch.ones_like(ids)
            with torch.no_grad():
                want = LMExport(model)(ids, mask).numpy()
            (got,) = session.run(list(LM_OUTPUTS), {INPUTS[0]: ids.numpy(), INPUTS[1]: mask.numpy()})
            if got.shape != want.shape:
                raise ValueError(f"exported LM gives logits of shape {got.shape}, torch {want.shape}")
            worst = max(worst, float(np.abs(got - want).max()))
    finally:
        model.train(was_training)
    if not worst <= tolerance:
        raise ValueError(f"exported LM {path} differs from torch by {worst:.2e} (tolerance {tolerance:.0e}): "
                         f"not bundled")  # fmt: skip
    return worst


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic int8 quantisation (int8 weights, activations quantised at run time)."""
    with tempfile.TemporaryDirectory(prefix="netgptd-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))  # shape inference and fusions the quantiser relies on
        quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8)
    return Path(dst)


def write_bundle(directory: str | Path, model: NetGPT, apps: Sequence[str], attacks: Sequence[str],
                 tokenizer_config: TokenizerConfig, shape: ModelShape, training_summary: dict[str, Any],
                 evaluation: dict[str, Any], name: str, version: str, quantized: bool = False,
                 lm_model: NetGPT | None = None, port_prior: PortPrior | None = None,
                 thresholds: Thresholds = Thresholds()) -> Path:  # fmt: skip
    """``model.onnx`` (classifier), ``lm.onnx`` (LM head, for generation) and
    ``manifest.json`` in ``directory``; returns the directory.

    The LM is ``lm_model``'s where given (e.g. the weights as pretraining
    left them: fine-tuning the backbone for classification wears the LM
    down), else ``model``'s. ``port_prior``, fitted on the training flows,
    and ``thresholds``, fitted on validation flows, go into the manifest.

    The manifest is written last: a bundle whose export failed half-way,
    or whose model was replaced without it, is refused by ``load_bundle``.
    """
    lm_model = lm_model or model
    if shape != model.shape or shape != lm_model.shape:
        raise ValueError(f"shape {shape} is not the model's {model.shape} (LM: {lm_model.shape})")
    if lm_model.lm.config.vocab_size != model.lm.config.vocab_size:
        raise ValueError(f"the LM's vocabulary ({lm_model.lm.config.vocab_size}) is not the model's "
                         f"({model.lm.config.vocab_size})")  # fmt: skip
    if len(apps) != model.app_head.out_features or len(attacks) != model.attack_head.out_features:
        raise ValueError(f"{len(apps)} apps and {len(attacks)} attacks named, the model has "
                         f"{model.app_head.out_features} and {model.attack_head.out_features}")  # fmt: skip
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_path, lm_path = directory / MODEL_FILE, directory / LM_FILE
    if quantized:
        with tempfile.TemporaryDirectory(prefix="netgptd-export-") as tmp:
            quantize_int8(export_onnx(model, Path(tmp) / "float.onnx"), model_path)
            quantize_int8(export_lm_onnx(lm_model, Path(tmp) / "lm-float.onnx"), lm_path)
    else:
        export_onnx(model, model_path)
        export_lm_onnx(lm_model, lm_path)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "name": name,
        "version": version,
        "model_file": MODEL_FILE,
        "sha256": sha256_file(model_path),
        "size_bytes": model_path.stat().st_size,
        "lm_file": LM_FILE,
        "lm_sha256": sha256_file(lm_path),
        "lm_outputs": list(LM_OUTPUTS),
        "opset": OPSET,
        "quantized": quantized,
        "inputs": list(INPUTS),
        "outputs": list(OUTPUTS),
        "apps": list(apps),
        "attacks": list(attacks),
        "tokenizer": tokenizer_config.to_dict(),
        "port_prior": port_prior.to_dict() if port_prior is not None else None,
        "thresholds": thresholds.to_dict(),
        "shape": shape.to_dict(),
        "training": training_summary,
        "evaluation": evaluation,
    }
    partial = directory / (MANIFEST_FILE + ".tmp")
    partial.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    partial.replace(directory / MANIFEST_FILE)
    return directory
