"""The web page at `/`: upload an image or paste an image URL, see every task's prediction.

One self-contained HTML file (inline CSS and JS, nothing fetched from elsewhere) that posts to
the TF-Serving-style endpoint: {"instances": [{"b64": ...}]} for an upload, {"instances":
[{"url": ...}]} for a URL, which the server fetches under its URL policy.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from polyhead.serving.service import ModelService


@lru_cache(maxsize=1)
def _template() -> str:
    return resources.files("polyhead.serving").joinpath("page.html").read_text(encoding="utf-8")


def render(service: ModelService) -> str:
    runner = service.runner
    model = {"name": service.name, "backend": runner.backend, "channels": runner.channels,
             "image_size": list(runner.image_size), "tasks": service.task_summary(),
             "predict_url": f"/v1/models/{service.name}:predict"}
    # "<" escaped so no label can close the <script> element it sits in
    blob = json.dumps(model).replace("<", "\\u003c")
    return _template().replace("__TITLE__", html.escape(service.name)).replace("__MODEL_JSON__", blob)


def router(service: ModelService) -> APIRouter:
    api = APIRouter(tags=["page"])
    page = render(service)

    @api.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    return api
