"""The central inference service: a model bundle behind Triton (KServe v2 protocol), with dynamic batching.

    netgptd serve-central --model BUNDLE --python .venv-triton/bin/python [--http-port 8000] ...
    python -m netgptd.model.triton_serve --model BUNDLE [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]

Runs NVIDIA's Triton Inference Server through PyTriton (PyPI
``nvidia-pytriton``, which ships the server; it runs on the CPU) with the
bundle's ``model.onnx`` under onnxruntime, named ``<name>-<version>`` of its
manifest (a sensor asks for its own bundle's, unless told another with
``[model] central_model``: the labels must be its own): inputs ``input_ids`` and ``attention_mask``
(INT64, ``[batch, max_tokens]``, the bundle's tokenizer width: sensors pad
to it, so rows from different sensors batch together), outputs
``app_logits`` and ``attack_logits`` (FP32). Triton's dynamic batcher
gathers requests from many sensors into batches of up to ``--max-batch``,
waiting at most ``--queue-delay-us``. Sensors reach it through
``[model] central_url`` (:mod:`netgptd.model.central`).

PyTriton pins numpy below 2 and its Python backend needs a Python whose
standard library matches the one it was built against (Debian's
``python3`` 3.11 works; pyenv's 3.11.7 does not), so it lives in a virtual
environment of its own (``setup.sh`` makes ``.venv-triton``), with this
package on ``PYTHONPATH``; the sensor side needs only ``tritonclient``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from netgptd.model.bundle import INPUTS, OUTPUTS, Bundle, BundleError, load_bundle



def triton_name(bundle: Bundle) -> str:
    """The name a bundle is served under: ``<name>-<version>`` (sensors ask for their own by default)."""
    return f"{bundle.name}-{bundle.version}"


def infer_function(model: bytes, threads: int) -> Any:
    """A PyTriton batched infer function running ``model`` (ONNX bytes) with onnxruntime."""
    import numpy as np
    import onnxruntime as ort
    from pytriton.decorators import batch

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])

    @batch
    def infer(input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        app, attack = session.run(list(OUTPUTS), {INPUTS[0]: input_ids.astype(np.int64),
                                                  INPUTS[1]: attention_mask.astype(np.int64)})  # fmt: skip
        return {OUTPUTS[0]: app.astype(np.float32), OUTPUTS[1]: attack.astype(np.float32)}

    return infer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, metavar="DIR", help="the model bundle to serve")
    parser.add_argument("--host", default="127.0.0.1", help="the address Triton listens on (default %(default)s)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--max-batch", type=int, default=256, help="rows in one batch at most (default %(default)s)")
    parser.add_argument("--queue-delay-us", type=int, default=5000,
                        help="how long the dynamic batcher waits to fill a batch (default %(default)s µs)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default %(default)s)")


def add_serve_central_parser(sub: Any) -> None:
    """``netgptd serve-central``: runs this module with the Python that has PyTriton (``--python``)."""
    p = sub.add_parser("serve-central", help="serve a model bundle to a fleet's sensors from Triton (KServe v2)",
                       description=__doc__.split("\n\n")[2].replace("\n", " "))  # fmt: skip
    add_arguments(p)
    p.add_argument("--python", default=os.environ.get("NETGPTD_TRITON_PYTHON", "python3"), metavar="PYTHON",
                   help="the Python with nvidia-pytriton and onnxruntime (default $NETGPTD_TRITON_PYTHON or "
                        "%(default)s; setup.sh test makes .venv-triton/bin/python)")  # fmt: skip
    p.set_defaults(func=cmd_serve_central)


def cmd_serve_central(args: argparse.Namespace) -> int:
    """Replace this process with the service, run by ``args.python`` with this netgptd on its path."""
    package_root = str(Path(__file__).resolve().parent.parent.parent)
    argv = [args.python, "-m", "netgptd.model.triton_serve", "--model", str(args.model), "--host", args.host,
            "--http-port", str(args.http_port), "--grpc-port", str(args.grpc_port), "--metrics-port",
            str(args.metrics_port), "--max-batch", str(args.max_batch), "--queue-delay-us", str(args.queue_delay_us),
            "--threads", str(args.threads)]  # fmt: skip
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    try:
        os.execvpe(args.python, argv, env)
    except OSError as exc:
        print(f"netgptd serve-central: --python {args.python}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netgptd.model.triton_serve", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        bundle = load_bundle(args.model)
        model = bundle.model_bytes()
    except BundleError as exc:
        print(f"triton_serve: {exc}", file=sys.stderr)
        return 2
    import numpy as np
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    width = bundle.tokenizer.max_tokens
    config = TritonConfig(http_address=args.host, http_port=args.http_port, grpc_address=args.host,
                          grpc_port=args.grpc_port, metrics_port=args.metrics_port)  # fmt: skip
    with Triton(config=config) as triton:
        triton.bind(model_name=triton_name(bundle), infer_func=infer_function(model, args.threads),
                    inputs=[Tensor(name=name, dtype=np.int64, shape=(width,)) for name in INPUTS],
                    outputs=[Tensor(name=OUTPUTS[0], dtype=np.float32, shape=(len(bundle.apps),)),
                             Tensor(name=OUTPUTS[1], dtype=np.float32, shape=(len(bundle.attacks),))],
                    config=ModelConfig(max_batch_size=args.max_batch,
                                       batcher=DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us)),
                    strict=True)  # fmt: skip
        print(f"triton_serve: {bundle.model_id} as {triton_name(bundle)} on http://{args.host}:{args.http_port}", flush=True)
        triton.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
