"""Serving one trained model over HTTP (`polyhead serve`).

    runner.py     Runner protocol, TorchRunner, load_runner (torch | onnx)
    app.py        the FastAPI app: create_app / build_app, error shape, middlewares
    kserve.py     Open Inference Protocol (KServe v2) REST, with tensors.py (binary extension)
    tfserving.py  TF-Serving-style REST (:predict)
    page.py       the web page at /
    service.py    what both protocols share: model, name, batcher, metrics
    batching.py   dynamic batching
    inputs.py     request payloads -> pixels (polyhead.data.images.decode_image)
    limits.py     request limits and the 4xx they give
    urls.py       fetching image URLs under a policy (no private addresses)
    metrics.py    Prometheus metrics
"""
