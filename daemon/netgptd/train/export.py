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

import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

from netgptd.model.bundle import INPUTS, MANIFEST_FILE, MANIFEST_VERSION, MODEL_FILE, OUTPUTS, sha256_file
from netgptd.model.tokenizer import CLS, PAD, TokenizerConfig
from netgptd.train.model import ClassifierExport, ModelShape, NetGPT

OPSET = 18


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


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic int8 quantisation (int8 weights, activations quantised at run time)."""
    with tempfile.TemporaryDirectory(prefix="netgptd-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))  # shape inference and fusions the quantiser relies on
        quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8)
    return Path(dst)


def write_bundle(directory: str | Path, model: NetGPT, apps: Sequence[str], attacks: Sequence[str],
                 tokenizer_config: TokenizerConfig, shape: ModelShape, training_summary: dict[str, Any],
                 evaluation: dict[str, Any], name: str, version: str, quantized: bool = False) -> Path:  # fmt: skip
    """``model.onnx`` and ``manifest.json`` in ``directory``; returns the directory.

    The manifest is written last: a bundle whose export failed half-way,
    or whose model was replaced without it, is refused by ``load_bundle``.
    """
    if shape != model.shape:
        raise ValueError(f"shape {shape} is not the model's {model.shape}")
    if len(apps) != model.app_head.out_features or len(attacks) != model.attack_head.out_features:
        raise ValueError(f"{len(apps)} apps and {len(attacks)} attacks named, the model has "
                         f"{model.app_head.out_features} and {model.attack_head.out_features}")  # fmt: skip
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / MODEL_FILE
    if quantized:
        with tempfile.TemporaryDirectory(prefix="netgptd-export-") as tmp:
            quantize_int8(export_onnx(model, Path(tmp) / "float.onnx"), model_path)
    else:
        export_onnx(model, model_path)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "name": name,
        "version": version,
        "model_file": MODEL_FILE,
        "sha256": sha256_file(model_path),
        "size_bytes": model_path.stat().st_size,
        "opset": OPSET,
        "quantized": quantized,
        "inputs": list(INPUTS),
        "outputs": list(OUTPUTS),
        "apps": list(apps),
        "attacks": list(attacks),
        "tokenizer": tokenizer_config.to_dict(),
        "shape": shape.to_dict(),
        "training": training_summary,
        "evaluation": evaluation,
    }
    partial = directory / (MANIFEST_FILE + ".tmp")
    partial.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    partial.replace(directory / MANIFEST_FILE)
    return directory
