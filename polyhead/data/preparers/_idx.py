"""The raw Fashion-MNIST IDX files: finding, downloading and reading them.

Shared by every preparer built from Fashion-MNIST (`fashion-mnist`, `multifashion`).
The files are looked for in `source` if given; otherwise in Debian's
`dataset-fashion-mnist` folder, then in OUT/raw (an earlier download); and only
with `download=True` are they fetched from the official mirror into OUT/raw.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from polyhead.errors import DataError

__all__ = [
    "BASE_URL", "DEBIAN_DIR", "DOWNLOAD_MD5", "IDX_FILES", "load_split", "locate", "read_idx",
]  # fmt: skip

N_CLASSES = 10

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's `dataset-fashion-mnist` package installs the IDX files."""

BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# Official MD5 of the .gz files on BASE_URL (the same ones torchvision checks).
DOWNLOAD_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

# (split, kind) -> IDX file name without ".gz"
IDX_FILES: dict[tuple[str, str], str] = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # ubyte data, 3 dims / 1 dim


# ---------------------------------------------------------------- reading


def read_idx(path: Path, kind: str) -> np.ndarray:
    """Read an IDX file of unsigned bytes, gzipped or not.

    Args:
        path: the file.
        kind: "images" (expects magic 0x00000803, returns uint8 [N, H, W]) or
            "labels" (expects magic 0x00000801, returns uint8 [N]).
    """
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read IDX file '{path}': {e}") from None
    expected = _MAGIC[kind]
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != expected:
        found = "the file is shorter than 4 bytes" if magic is None else f"found 0x{magic:08X}"
        raise DataError(
            f"'{path}' is not an IDX {kind} file: expected magic number 0x{expected:08X}, {found}"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(dims)):
        raise DataError(
            f"IDX file '{path}' is truncated or padded: header says {dims} "
            f"({int(np.prod(dims))} bytes of data), file has {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_split(files: dict[tuple[str, str], Path], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check one split: (images uint8 [N, 28, 28], labels uint8 [N] in 0..9)."""
    img_path, lbl_path = files[(split, "images")], files[(split, "labels")]
    images, labels = read_idx(img_path, "images"), read_idx(lbl_path, "labels")
    if len(images) != len(labels):
        raise DataError(
            f"'{img_path}' holds {len(images)} images but '{lbl_path}' holds {len(labels)} labels"
        )
    if labels.size and labels.max() >= N_CLASSES:
        row = int(np.argmax(labels >= N_CLASSES))
        raise DataError(
            f"'{lbl_path}' row {row}: label {labels[row]} is not a Fashion-MNIST class (0-9)"
        )
    return images, labels


# ---------------------------------------------------------------- finding / downloading


def _find_in(folder: Path) -> tuple[dict[tuple[str, str], Path], list[str]]:
    """Return ({key: path} for the IDX files found in `folder`, [missing file names])."""
    found, missing = {}, []
    for key, name in IDX_FILES.items():
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            missing.append(name)
    return found, missing


def locate(out: Path, source: Path | None, download: bool) -> tuple[dict, str]:
    """Return ({(split, kind): path} of the four IDX files, where they were found, in words)."""
    if source is not None:
        source = Path(source)
        if not source.is_dir():
            raise DataError(f"--source '{source}' is not a folder")
        found, missing = _find_in(source)
        if missing:
            raise DataError(
                f"--source '{source}' lacks the Fashion-MNIST file(s) {', '.join(missing)} "
                "(each may be gzipped, with '.gz' added)"
            )
        return found, str(source)

    raw = out / "raw"
    for folder in (DEBIAN_DIR, raw):
        found, missing = _find_in(folder)
        if not missing:
            return found, str(folder)
    if not download:
        raise DataError(
            f"Fashion-MNIST IDX files not found in '{DEBIAN_DIR}' or '{raw}'; "
            "install them with `apt-get install dataset-fashion-mnist`, "
            "or pass --source DIR (a folder holding them), "
            f"or --download to fetch them from {BASE_URL}"
        )
    _download(raw)
    return _find_in(raw)[0], f"{BASE_URL} (downloaded into '{raw}')"


def _download(raw: Path) -> None:
    """Fetch the four .gz files into `raw`, checking their official MD5."""
    raw.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES.values():
        target = raw / f"{name}.gz"
        if target.is_file():
            continue
        url = BASE_URL + target.name
        partial = target.with_name(target.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as f:
                shutil.copyfileobj(response, f)
        except (urllib.error.URLError, OSError) as e:
            partial.unlink(missing_ok=True)
            raise DataError(
                f"could not download {url}: {getattr(e, 'reason', e)}; "
                "without network, use `apt-get install dataset-fashion-mnist` or --source DIR"
            ) from None
        expected = DOWNLOAD_MD5.get(target.name)
        actual = hashlib.md5(partial.read_bytes(), usedforsecurity=False).hexdigest()
        if expected is not None and actual != expected:
            partial.unlink()
            raise DataError(f"download of {url} is corrupt: MD5 {actual}, expected {expected}")
        partial.replace(target)
