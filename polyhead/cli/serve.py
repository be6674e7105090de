"""polyhead serve RUN_OR_EXPORT [--port 8080] [--name NAME] [--backend torch|onnx] ..."""

from __future__ import annotations

import argparse

from polyhead.errors import PolyheadError
from polyhead.serving.limits import Limits
from polyhead.serving.settings import ServeSettings


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve a trained model over HTTP (KServe v2, TF-Serving style, a web page)",
                       description="Serves one model: the Open Inference Protocol (KServe v2) under /v2, "
                                   "TF-Serving-style REST under /v1, a web page at /, Prometheus metrics at "
                                   "/metrics and the OpenAPI schema at /openapi.json. See docs/serving.md.")
    p.add_argument("path", metavar="RUN_OR_EXPORT",
                   help="run folder or bundle folder (torch), or an ONNX export folder / model.onnx (onnx)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--name", help="model name in URLs (default: the run's config name)")
    p.add_argument("--backend", choices=("torch", "onnx"), default=ServeSettings.backend)
    p.add_argument("--device", default=ServeSettings.device, help="torch backend: auto, cpu or cuda")
    p.add_argument("--max-batch", type=_number(int), default=ServeSettings.max_batch,
                   help="images per forward pass; 1 turns dynamic batching off (default: %(default)s)")
    p.add_argument("--max-wait-ms", type=_number(float, zero=True), default=ServeSettings.max_wait_ms,
                   help="how long a batch waits for more requests before it runs (default: %(default)s)")
    p.add_argument("--max-bytes", type=_number(int), default=Limits.max_bytes,
                   help="largest request body, and largest image fetched from a URL (default: %(default)s)")
    p.add_argument("--max-instances", type=_number(int), default=Limits.max_instances,
                   help="most images in one request (default: %(default)s)")
    p.add_argument("--max-pixels", type=_number(int),
                   help="largest image, width x height read from its header (default: Pillow's MAX_IMAGE_PIXELS)")
    p.add_argument("--allow-private-urls", action="store_true",
                   help="let image URLs reach loopback, private and link-local addresses (local testing only)")
    p.add_argument("--workers", type=_number(int), default=1, help="server processes, each with its own model")
    p.set_defaults(func=run)


def _number(kind, zero: bool = False):
    """argparse type: a positive (or, with `zero`, non-negative) int or float."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"expected a {'non-negative' if zero else 'positive'} number, "
                                             f"got {text!r}")
        return value
    return parse


def run(args) -> int:
    import os

    try:
        import uvicorn

        from polyhead.serving.app import create_app
    except ImportError as exc:
        raise PolyheadError(f"polyhead serve needs the 'serve' extra: pip install 'polyhead[serve]' "
                            f"({exc})") from None
    from polyhead.serving.runner import load_runner
    from polyhead.serving.settings import ENVIRONMENT

    limits = Limits(max_bytes=args.max_bytes, max_instances=args.max_instances, max_pixels=args.max_pixels,
                    allow_private_urls=args.allow_private_urls)
    settings = ServeSettings(path=args.path, backend=args.backend, device=args.device, name=args.name,
                             max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, limits=limits,
                             plugins=list(getattr(args, "plugin", ())))
    runner = load_runner(args.path, args.backend, args.device)  # a bad path fails here, in one line
    app = create_app(runner, name=args.name, limits=limits, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    name, base = app.state.service.name, f"http://{args.host}:{args.port}"
    print(f"serving model '{name}' ({runner.backend}; tasks: {', '.join(runner.tasks)}) on {base}/\n"
          f"  KServe v2: {base}/v2/models/{name}   TF-Serving: {base}/v1/models/{name}:predict   "
          f"metrics: {base}/metrics", flush=True)
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    del app, runner  # each worker process loads its own copy
    os.environ[ENVIRONMENT] = settings.to_json()
    uvicorn.run("polyhead.serving.app:app_from_environment", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning")
    return 0
