"""Export a trained run for serving: one ONNX graph (`onnx.py`), a Triton Inference Server model
repository around it (`triton.py`), the graph run by onnxruntime behind the Runner contract
(`runtime.py`) and the onnxruntime-vs-PyTorch parity check (`parity.py`).

The metadata a client needs to pre- and post-process without polyhead is described in
`metadata.py` and docs/serving.md. onnx and onnxruntime come with the `serve` extra
(`pip install polyhead[serve]`); they are imported only when an export or a runner is used.
"""

# Torch-free constants, so that `polyhead --help` stays light.
MIN_OPSET = 13  # the oldest opset the parity tests cover (Softmax on any axis, Split/Squeeze with axes inputs)
MAX_OPSET = 20  # the newest the TorchScript exporter writes
DEFAULT_OPSET = 17  # onnxruntime >= 1.14, Triton's onnxruntime backend since 23.02
DEFAULT_MAX_BATCH = 64  # Triton's max_batch_size


def import_serving_dependency(module: str):
    """Import onnx / onnxruntime, or say in one line how to install them."""
    import importlib

    from polyhead.errors import PolyheadError

    try:
        return importlib.import_module(module)
    except ImportError:
        raise PolyheadError(f"this needs the Python package '{module}', which is not installed: "
                            "pip install 'polyhead[serve]'") from None
