"""KServe v2 / Triton tensors on the wire: the JSON form and the binary tensor data extension.

Binary extension (what `tritonclient.http` sends and asks for by default): the body is a JSON
header of `Inference-Header-Content-Length` bytes followed by the raw tensors, in input (or
output) order, each announced by `"parameters": {"binary_data_size": n}`. FP32 is little-endian
row-major; BYTES is each element as a 4-byte little-endian length and then its bytes.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from polyhead.serving.limits import RequestError, parse_json


def split_body(body: bytes, header_length: str | None, binary: bool) -> tuple[Any, bytes]:
    """(JSON header, binary tail). `header_length` is the Inference-Header-Content-Length header;
    `binary` says the Content-Type was application/octet-stream (which needs that header)."""
    if header_length is None:
        if binary:
            raise RequestError(400, "an application/octet-stream body needs the Inference-Header-Content-Length "
                                    "header (binary tensor data extension)")
        return parse_json(body), b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise RequestError(400, f"Inference-Header-Content-Length {header_length!r}: expected the JSON header's "
                                f"size in bytes, at most the body's {len(body)}")
    n = int(header_length)
    return parse_json(body[:n]), body[n:]


def take_binary(inputs: list[dict], tail: bytes) -> list[bytes | None]:
    """Cut the binary tail into one chunk per input (None where the input carries JSON data)."""
    chunks, offset = [], 0
    for i, spec in enumerate(inputs):
        size = (spec.get("parameters") or {}).get("binary_data_size") if isinstance(spec, dict) else None
        if size is None:
            chunks.append(None)
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(tail):
            raise RequestError(400, f"inputs[{i}].parameters.binary_data_size {size!r}: only "
                                    f"{len(tail) - offset} bytes of binary data are left")
        chunks.append(tail[offset:offset + size])
        offset += size
    if offset != len(tail):
        raise RequestError(400, f"{len(tail) - offset} bytes of binary data after the last input's "
                                f"binary_data_size; the sizes must add up to the binary part of the body")
    return chunks


def unpack_bytes(chunk: bytes, field: str) -> list[bytes]:
    """BYTES tensor data: [uint32 little-endian length][bytes] repeated."""
    out, offset = [], 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise RequestError(400, f"{field}: BYTES data ends inside an element's 4-byte length")
        (n,) = struct.unpack_from("<I", chunk, offset)
        offset += 4
        if offset + n > len(chunk):
            raise RequestError(400, f"{field}: BYTES element of {n} bytes runs past the end of the data")
        out.append(chunk[offset:offset + n])
        offset += n
    return out


def pack_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def unpack_fp32(chunk: bytes, shape: list[int], field: str) -> np.ndarray:
    count = math.prod(shape)
    if len(chunk) != 4 * count:
        raise RequestError(400, f"{field}: {len(chunk)} bytes of FP32 data for shape {shape} "
                                f"({count} values = {4 * count} bytes)")
    return np.frombuffer(chunk, dtype="<f4").reshape(shape)


def output_tensor(name: str, value: np.ndarray | list[bytes], shape: list[int], binary: bool) -> tuple[dict, bytes]:
    """One response output: (JSON entry, binary chunk or b''). `value` is an FP32 array or BYTES items."""
    is_bytes = isinstance(value, list)
    entry: dict[str, Any] = {"name": name, "datatype": "BYTES" if is_bytes else "FP32", "shape": shape}
    if binary:
        chunk = pack_bytes(value) if is_bytes else np.ascontiguousarray(value, dtype="<f4").tobytes()
        entry["parameters"] = {"binary_data_size": len(chunk)}
        return entry, chunk
    entry["data"] = [b.decode("utf-8") for b in value] if is_bytes else value.reshape(-1).tolist()
    return entry, b""


def response_body(header: dict, chunks: list[bytes], binary: bool) -> tuple[bytes, dict[str, str]]:
    """(body, headers): plain JSON, or (`binary`) JSON + binary tail with Inference-Header-Content-Length."""
    head = json.dumps(header).encode()
    if not binary:
        return head, {"Content-Type": "application/json"}
    return head + b"".join(chunks), {"Content-Type": "application/octet-stream",
                                      "Inference-Header-Content-Length": str(len(head))}
