"""The URL policy: http(s) only; loopback, private, link-local, multicast and metadata addresses refused
(checked again on every redirect and at connect time); size cap, timeout, content type.

Only 127.0.0.1 is ever contacted: a guard fails the test if anything tries to connect elsewhere,
and "public" hosts are names whose resolution the tests replace."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from serving_fixtures import served_run  # noqa: F401  (fixture)

from polyhead.serving import urls
from polyhead.serving.app import create_app
from polyhead.serving.limits import Limits, RequestError
from polyhead.serving.runner import load_runner

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.9", "private"),
    ("192.168.1.1", "private"), ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"), ("100.100.100.200", "metadata"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("fc00::1", "private"), ("0.0.0.0", "unspecified"),
    ("::ffff:10.0.0.1", "private"), ("100.64.0.1", "not a public address"), ("240.0.0.1", "reserved"),
])
def test_refused_addresses(address, reason):
    assert reason in urls.address_refusal(ipaddress.ip_address(address), allow_private=False)


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert urls.address_refusal(ipaddress.ip_address(address), allow_private=False) is None


def test_allow_private_opens_local_addresses_but_never_metadata():
    for address in ("127.0.0.1", "10.0.0.1", "192.168.0.5", "fe80::1"):
        assert urls.address_refusal(ipaddress.ip_address(address), allow_private=True) is None
    assert "metadata" in urls.address_refusal(ipaddress.ip_address("169.254.169.254"), allow_private=True)


# ---------------------------------------------------------------------------------- fetching


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        path = self.path
        if path == "/img.png":
            return self._send(200, "image/png", PNG)
        if path.startswith("/hop/"):  # /hop/N redirects N more times, then to /img.png
            n = int(path.rsplit("/", 1)[1])
            return self._redirect(f"/hop/{n - 1}" if n > 1 else "/img.png")
        if path.startswith("/to?"):  # /to?URL redirects to URL
            return self._redirect(path[4:])
        if path == "/page":
            return self._send(200, "text/html; charset=utf-8", b"<html>hello</html>")
        if path == "/big":
            return self._send(200, "image/png", PNG + b"\0" * 50_000)
        if path == "/big-chunked":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(PNG + b"\0" * 50_000)
            return None
        if path == "/slow":
            time.sleep(2)
            return self._send(200, "image/png", PNG)
        return self._send(404, "text/plain", b"nope")

    def _send(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def origin():
    """A local image server on 127.0.0.1 (a free port); its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail any connection attempt to an address other than 127.0.0.1 (none must ever be made)."""
    real = asyncio.selector_events.BaseSelectorEventLoop.sock_connect
    attempts = []

    async def guarded(self, sock, address):
        attempts.append(address[0])
        if address[0] != "127.0.0.1":
            raise AssertionError(f"the fetcher tried to connect to {address[0]}")
        return await real(self, sock, address)

    monkeypatch.setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", guarded)
    return attempts


@pytest.fixture
def public_loopback(monkeypatch):
    """Pretend 127.0.0.1 is a public address (so the local server can stand in for the internet), and
    resolve names from a table: {"name": [addresses]} (a list of lists: one answer per lookup)."""
    real = urls.address_refusal
    monkeypatch.setattr(urls, "address_refusal",
                        lambda ip, allow_private: None if str(ip) == "127.0.0.1" else real(ip, allow_private))
    table: dict[str, list[list[str]]] = {}

    def resolve(host, port):
        answers = table[host]
        return answers.pop(0) if len(answers) > 1 else answers[0]

    monkeypatch.setattr(urls, "resolve", resolve)
    return table


def _fetch(url, **limits):
    kwargs = {"url_timeout_s": 5.0, **limits}
    return asyncio.run(urls.fetch_image(url, Limits(**kwargs), limits.get("max_bytes", 1_000_000)))


def _refused(url, fragment, status=400, **limits):
    with pytest.raises(RequestError) as info:
        _fetch(url, **limits)
    assert info.value.status == status and fragment in str(info.value), str(info.value)
    return str(info.value)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://example.com/",
                                 "javascript:alert(1)", "//example.com/a.png", "data:image/png;base64,AAAA"])
def test_only_http_and_https(url):
    _refused(url, "is not allowed; use http or https")


def test_loopback_and_private_hosts_are_refused(origin, monkeypatch, loopback_only):
    _refused(f"{origin}/img.png", "is 127.0.0.1, a loopback address; refused")
    _refused("http://[::1]/img.png", "a loopback address")
    _refused("http://10.0.0.7/img.png", "is 10.0.0.7, a private address")
    _refused("http://169.254.169.254/latest/meta-data/", "cloud metadata", allow_private_urls=True)
    monkeypatch.setattr(urls, "resolve", lambda host, port: ["93.184.216.34", "192.168.0.3"])
    _refused("http://mixed.example/img.png", "is 192.168.0.3, a private address")  # any bad address refuses
    assert loopback_only == []  # refused before any connection


def test_allowed_fetch_and_allow_private(origin):
    assert _fetch(f"{origin}/img.png", allow_private_urls=True) == PNG
    assert _fetch(f"{origin}/hop/3", allow_private_urls=True) == PNG  # 3 redirects: the limit


def test_every_redirect_is_checked_again(origin, public_loopback, loopback_only):
    assert _fetch(f"{origin}/img.png") == PNG  # 127.0.0.1 passes as "public" here
    _refused(f"{origin}/to?http://10.9.9.9/img.png", "is 10.9.9.9, a private address")
    public_loopback["metadata.example"] = [["169.254.169.254"]]
    _refused(f"{origin}/to?http://metadata.example/x", "cloud metadata")
    _refused(f"{origin}/to?file:///etc/passwd", "scheme 'file'")
    _refused(f"{origin}/hop/4", "more than 3 redirects")
    assert set(loopback_only) == {"127.0.0.1"}


def test_a_name_that_changes_its_answer_is_checked_at_connect_time(origin, public_loopback, loopback_only):
    port = origin.rsplit(":", 1)[1]
    public_loopback["rebind.example"] = [["127.0.0.1"], ["10.0.0.1"]]  # public for the check, then private
    _refused(f"http://rebind.example:{port}/img.png", "is 10.0.0.1, a private address")
    assert loopback_only == []


def test_size_cap_content_type_status_and_timeout(origin):
    local = {"allow_private_urls": True}
    _refused(f"{origin}/big", "over the limit of 10000 bytes", status=413, max_bytes=10_000, **local)
    _refused(f"{origin}/big-chunked", "over the limit of 10000 bytes", status=413, max_bytes=10_000, **local)
    _refused(f"{origin}/page", "is text/html, not an image", **local)
    _refused(f"{origin}/missing", "answered HTTP 404", **local)
    _refused(f"{origin}/slow", "did not answer within 0.5 s", url_timeout_s=0.5, **local)


def test_url_instances_through_the_server(served_run, origin, tmp_path):  # noqa: F811
    image = sorted(served_run["images"].iterdir())[0]
    runner = load_runner(served_run["run"], device="cpu")
    body = {"instances": [{"url": f"{origin}/to?{origin}/img.png"}, {"b64": base64.b64encode(image.read_bytes()).decode()}]}
    with TestClient(create_app(runner)) as client:
        refused = client.post("/v1/models/quads:predict", json=body)
    assert refused.status_code == 400 and "loopback address; refused" in refused.json()["error"]
    assert "--allow-private-urls" in refused.json()["error"]
    with TestClient(create_app(runner, limits=Limits(allow_private_urls=True))) as client:
        answer = client.post("/v1/models/quads:predict", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][1]["quadrant"] == served_run["predict"].loc[image.name, "quadrant"]
