"""Fetching an image URL for a request, without letting the URL reach inside the network.

The policy, checked on the first URL and again on every redirect (at most `max_redirects`):
- http and https only;
- the host is resolved and every address it resolves to must be public: loopback, private,
  link-local, shared (CGNAT), multicast, reserved and unspecified addresses are refused unless
  `allow_private_urls`; cloud metadata addresses are refused always;
- the connection goes to the addresses that were checked (aiohttp uses our resolver), so a name
  cannot resolve to a public address for the check and a private one for the connection;
- a total timeout, a size cap (Content-Length and the bytes actually read) and a content type
  of image/* (or application/octet-stream, left to the image decoder).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from polyhead.serving.limits import Limits, RequestError

# instance metadata services (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba, Oracle)
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"))
_REDIRECTS = (301, 302, 303, 307, 308)
_IMAGE_TYPES = ("image/", "application/octet-stream")


def address_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> str | None:
    """Why a connection to `ip` is refused, or None if it is allowed."""
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if allow_private:
        return None
    for kind in ("loopback", "unspecified", "multicast", "link_local", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    return None if ip.is_global else "not a public address"


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


async def checked_addresses(host: str, port: int, allow_private: bool) -> list[str]:
    """Resolve `host` and check every address; RequestError(400) naming the refused one."""
    try:
        addresses = [host] if _is_ip(host) else await asyncio.to_thread(resolve, host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise RequestError(400, f"url: cannot resolve host {host!r} ({exc})") from None
    for address in addresses:
        reason = address_refusal(ipaddress.ip_address(address.split("%", 1)[0]), allow_private)
        if reason is not None:
            hint = "" if allow_private else " (a server for local testing can allow these: --allow-private-urls)"
            raise RequestError(400, f"url: host {host!r} is {address}, {reason}; refused{hint}")
    if not addresses:
        raise RequestError(400, f"url: host {host!r} resolves to no address")
    return addresses


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _split(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, else 400."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RequestError(400, f"url: {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise RequestError(400, f"url: scheme {parts.scheme or '(none)'!r} is not allowed; use http or https")
    if not parts.hostname:
        raise RequestError(400, f"url: {url!r} has no host")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


class _CheckedResolver(AbstractResolver):
    """aiohttp resolver that connects only to addresses `checked_addresses` allowed."""

    def __init__(self, allow_private: bool):
        self.allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        addresses = await checked_addresses(host, port, self.allow_private)
        return [{"hostname": host, "host": a, "port": port, "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST} for a in addresses]

    async def close(self) -> None:
        pass


async def fetch_image(url: str, limits: Limits, max_bytes: int) -> bytes:
    """The body of `url` (an image, at most `max_bytes`), following at most `limits.max_redirects`
    redirects, each one checked again. RequestError: 400 refused or failed, 413 too large."""
    timeout = aiohttp.ClientTimeout(total=limits.url_timeout_s)
    connector = aiohttp.TCPConnector(resolver=_CheckedResolver(limits.allow_private_urls), use_dns_cache=False,
                                     force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
        for _ in range(limits.max_redirects + 1):
            _, host, port = _split(url)
            await checked_addresses(host, port, limits.allow_private_urls)  # IP literals skip the resolver
            try:
                async with session.get(url, allow_redirects=False, headers={"Accept": "image/*"}) as resp:
                    if resp.status in _REDIRECTS and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    return await _read_image(resp, url, max_bytes)
            except asyncio.TimeoutError:
                raise RequestError(400, f"url: {url} did not answer within {limits.url_timeout_s:g} s") from None
            except aiohttp.ClientError as exc:
                raise RequestError(400, f"url: cannot fetch {url} ({type(exc).__name__}: {exc})") from None
    raise RequestError(400, f"url: more than {limits.max_redirects} redirects; last was to {url}")


async def _read_image(resp, url: str, max_bytes: int) -> bytes:
    if resp.status != 200:
        raise RequestError(400, f"url: {url} answered HTTP {resp.status}")
    ctype = (resp.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if not ctype.startswith(_IMAGE_TYPES):
        raise RequestError(400, f"url: {url} is {ctype or 'of no content type'}, not an image (image/*)")
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        raise RequestError(413, f"url: {url} is {declared} bytes, over the limit of {max_bytes} bytes")
    data = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > max_bytes:
            raise RequestError(413, f"url: {url} is over the limit of {max_bytes} bytes")
    return bytes(data)
