"""Asks a running `polyhead serve` about one image (TF-Serving-style REST), with the standard library only.

    python examples/shop_top2_tags/client.py http://127.0.0.1:18080 shop data/shop/images/test-0000.png

Every request has a timeout; `wait_ready` gives up after a deadline."""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.error
import urllib.request


def wait_ready(base_url: str, model: str, deadline_s: float = 120.0, alive=lambda: True) -> None:
    """Polls KServe v2's /v2/models/MODEL/ready until 200; `alive()` False (the server died) or the
    deadline stops it with RuntimeError."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if not alive():
            raise RuntimeError("the server exited before it was ready")
        try:
            with urllib.request.urlopen(f"{base_url}/v2/models/{model}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{base_url} was not ready after {deadline_s:.0f} s")


def predict(base_url: str, model: str, image_path: str, timeout_s: float = 30.0) -> dict:
    """One image -> its prediction row (the keys and labels of `polyhead predict`)."""
    with open(image_path, "rb") as f:
        body = json.dumps({"instances": [{"b64": base64.b64encode(f.read()).decode()}]}).encode()
    request = urllib.request.Request(f"{base_url}/v1/models/{model}:predict", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as r:
        return json.loads(r.read())["predictions"][0]


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: client.py BASE_URL MODEL IMAGE")
    url, name, image = sys.argv[1:]
    wait_ready(url, name, deadline_s=10)
    row = predict(url, name, image)
    print(f"category top-2: {row['category_top2']} ({[round(p, 3) for p in row['category_top2_prob']]}), "
          f"tags: {row['tags']}")
