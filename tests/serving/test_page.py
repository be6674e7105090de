"""The web page at / in headless Chromium: upload a file, paste a URL, show a readable error."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from browser import chromium
from serving_fixtures import live_server, served_run  # noqa: F401  (fixture)

from polyhead.serving.app import create_app
from polyhead.serving.limits import Limits
from polyhead.serving.runner import load_runner


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def setup(served_run):  # noqa: F811
    """The server (private URLs allowed: the pasted URL is a local test server) and an image origin."""
    origin = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served_run["images"])))
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    app = create_app(load_runner(served_run["run"], device="cpu"), limits=Limits(allow_private_urls=True))
    try:
        with live_server(app) as url, chromium() as browser:
            yield {"url": url, "origin": f"http://127.0.0.1:{origin.server_address[1]}", "browser": browser,
                   **served_run}
    finally:
        origin.shutdown()
        origin.server_close()


@pytest.fixture
def page(setup):
    page = setup["browser"].new_page()
    page.errors, page.requests = [], []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("request", lambda r: page.requests.append(r.url))
    page.goto(setup["url"] + "/")
    yield page
    page.close()


def _shown(page) -> dict:
    """{task: predicted text} and the probability-bar rows {task: [label, ...]} shown on the page."""
    page.wait_for_selector("#results .task", timeout=60_000)
    tasks = page.eval_on_selector_all("#results .task", """boxes => boxes.map(b => [b.dataset.task,
        b.querySelector('.predicted').textContent, Array.from(b.querySelectorAll('.row')).map(r => r.dataset.label)])""")
    return {name: (text, rows) for name, text, rows in tasks}


def _assert_like_predict(shown: dict, expected) -> None:
    assert shown["quadrant"] == (expected["quadrant"], list(expected["quadrant_top2"]))  # top-k bars
    assert shown["red"][0] == expected["red"] and shown["red"][1] == ["P(yes)"]  # the positive probability
    tags = list(expected["tags"])  # every label over its threshold, each with a bar
    assert shown["tags"] == (", ".join(tags) if tags else "none", tags)


def test_upload_shows_the_labels_of_polyhead_predict(setup, page):
    image = sorted(setup["images"].iterdir())[2]
    page.set_input_files("#file", str(image))
    _assert_like_predict(_shown(page), setup["predict"].loc[image.name])
    assert page.is_visible("#preview") and page.eval_on_selector("#preview", "i => i.naturalWidth") == 16
    bar = page.eval_on_selector("[data-task=quadrant] .row .fill", "f => f.style.width")
    assert bar == f"{100 * setup['predict'].loc[image.name, 'quadrant_prob']:.1f}%"
    page.screenshot(path=str(setup["run"].parent.parent / "page.png"))
    assert page.errors == []
    assert all(u.startswith((setup["url"], "data:")) for u in page.requests), page.requests  # nothing from elsewhere


def test_pasted_url_is_fetched_by_the_server(setup, page):
    image = sorted(setup["images"].iterdir())[5]
    page.fill("#url", f"{setup['origin']}/{image.name}")
    page.click("#url-go")
    _assert_like_predict(_shown(page), setup["predict"].loc[image.name])
    assert page.errors == []


def test_a_non_image_shows_a_readable_error(setup, page, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("this is not a picture")
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("#error", state="visible", timeout=60_000)
    message = page.inner_text("#error")
    assert "cannot read image 'instances[0]': not an image file" in message
    assert page.query_selector_all("#results .task") == [] and not page.is_visible("#preview")
    page.fill("#url", "ftp://example.com/a.png")  # refused by the URL policy, shown the same way
    page.click("#url-go")
    page.wait_for_function("document.getElementById('error').textContent.includes('use http or https')",
                           timeout=60_000)
