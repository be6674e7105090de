"""Decode-once image cache (`data.cache`): every image of a run decoded and resized once into one
uint8 array [N, C, H, W], before augmentation, so that epochs (and runs, and `compare`'s models)
index memory instead of decoding files.

    off     decode every image every epoch (DataLoader workers)
    memory  decode once into RAM, for this process only (kept for the next run in it: `compare`)
    disk    decode once into a .npy file under data.cache_dir, memory-mapped; reused by later runs
    auto    disk, and the array also loaded into RAM when it fits the memory budget
            (a quarter of the RAM, at most 8 GiB); RAM only if the cache folder is not writable

The cache is keyed by a fingerprint of the sorted image paths with each file's size and mtime,
the image size and channels: touching or replacing an image, or changing data.image_size or
data.channels, makes a new key (a new build). A file is written to a temporary name and renamed
when complete, so a build that is killed or fails is never read back. A cache folder that cannot
be written (read-only, full disk) costs one warning line; training goes on without the file.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from polyhead.data.images import load_image

MODES = ("auto", "memory", "disk", "off")
VERSION = 1  # bump when decoding changes what a cached pixel holds: old files are then never read
MEMORY_BUDGET_MAX = 8 << 30
_BUILD_BATCH = 256
_PARALLEL_FROM = 2048  # fewer images: decoded in this process (worker start-up would cost more)
_STALE_TEMP_SECONDS = 24 * 3600
_recent: dict[str, "ImageCache"] = {}  # the last cache this process used, for the next run (compare)


@dataclass
class ImageCache:
    """images: uint8 [M, C, H, W], one row per distinct path (`row` maps path -> row)."""

    images: torch.Tensor
    row: dict[str, int]
    where: str  # "memory" or the file

    def rows(self, paths: list[str]) -> np.ndarray:
        """int64 [len(paths)]: the cache row of each path."""
        return np.fromiter((self.row[p] for p in paths), dtype=np.int64, count=len(paths))


def default_cache_dir() -> Path:
    """$POLYHEAD_CACHE_DIR, else $XDG_CACHE_HOME/polyhead/images, else ~/.cache/polyhead/images."""
    if os.environ.get("POLYHEAD_CACHE_DIR"):
        return Path(os.environ["POLYHEAD_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "polyhead" / "images"


def memory_budget() -> int:
    """Bytes a cache may hold in RAM under `auto`: a quarter of the machine's memory, at most 8 GiB."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 4 << 30
    return min(MEMORY_BUDGET_MAX, total // 4)


def fingerprint(paths: list[str], channels: int, size: tuple[int, int]) -> str:
    """A hash of (sorted distinct paths, each file's size and mtime, image size, channels)."""
    h = hashlib.sha256(f"polyhead image cache v{VERSION} channels={channels} size={size[0]}x{size[1]}\n".encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:  # decoding will say what is wrong with it
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()[:24]


def open_cache(paths: list[str], *, mode: str, channels: int, size: tuple[int, int],
               cache_dir: str | Path | None = None, console=None, progress: bool = False) -> ImageCache | None:
    """The cache holding every image in `paths`, built if needed; None with mode "off" (or when a
    disk-only cache cannot be written: one warning on `console`, training goes on uncached).

    Raises ImageError when an image cannot be decoded (as loading it in training would)."""
    if mode == "off" or not paths:
        return None
    unique = sorted(set(paths))
    key = fingerprint(unique, channels, size)
    if key in _recent:
        return _recent[key]
    h, w = size
    nbytes = len(unique) * channels * h * w
    in_memory = mode == "memory" or (mode == "auto" and nbytes <= memory_budget())
    row = {p: i for i, p in enumerate(unique)}
    file = None if mode == "memory" else (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / (
        f"{key}-{len(unique)}x{channels}x{h}x{w}.npy")
    images = _read(file, (len(unique), channels, h, w), in_memory) if file is not None else None
    if images is not None:
        _say(console, f"image cache: {len(unique)} images from {file}")
        return _remember(key, ImageCache(images, row, str(file)))
    started = time.perf_counter()
    if in_memory:
        images = _decode_into_memory(unique, channels, size, progress, console)
        where = "memory"
        if file is not None and _write_atomic(file, lambda f: _write_rows(f, images.shape, [images]), console,
                                                 in_memory=True):
            where = f"memory and {file}"
    else:
        if not _write_atomic(file, lambda f: _write_rows(f, (len(unique), channels, h, w),
                                                         _decoded_batches(unique, channels, size, progress, console)),
                             console, in_memory=False):
            return None
        images, where = _read(file, (len(unique), channels, h, w), False), str(file)
    _say(console, f"image cache: decoded {len(unique)} images ({channels}x{h}x{w}) in "
                  f"{time.perf_counter() - started:.1f} s -> {where}")
    return _remember(key, ImageCache(images, row, where))


def forget() -> None:
    """Drop the cache this process keeps for its next run."""
    _recent.clear()


def _remember(key: str, cache: ImageCache) -> ImageCache:
    _recent.clear()  # one at a time: a process never holds two datasets' caches
    _recent[key] = cache
    return cache


def _say(console, text: str) -> None:
    if console is not None:
        console.print(text, soft_wrap=True, highlight=False)


# ---- decoding ---------------------------------------------------------------------------------
class _Decode(Dataset):
    def __init__(self, paths: list[str], channels: int, size: tuple[int, int]):
        self.paths, self.channels, self.size = paths, channels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return load_image(self.paths[i], channels=self.channels, size=self.size)


def _decoded_batches(paths: list[str], channels: int, size: tuple[int, int], progress: bool, console):
    """uint8 [b, C, H, W] batches of `paths` in order, decoded on every core (DataLoader workers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = 0 if len(paths) < _PARALLEL_FROM else min(cores, 16)
    # its own generator: a DataLoader draws its workers' base seed, which would move the global RNG
    # (and so the model's initial weights) only on runs that build the cache
    loader = DataLoader(_Decode(paths, channels, size), batch_size=_BUILD_BATCH, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))
    batches = iter(loader)
    if progress and console is not None and (console.is_interactive or console.is_jupyter):
        from rich.progress import track

        batches = track(batches, total=len(loader), description=f"caching {len(paths)} images", console=console)
    yield from batches


def _decode_into_memory(paths, channels, size, progress, console) -> torch.Tensor:
    images = torch.empty((len(paths), channels, *size), dtype=torch.uint8)
    start = 0
    for batch in _decoded_batches(paths, channels, size, progress, console):
        images[start:start + len(batch)] = batch
        start += len(batch)
    return images


# ---- files ------------------------------------------------------------------------------------
def _read(file: Path, shape: tuple[int, ...], in_memory: bool) -> torch.Tensor | None:
    """The cached array (copied into RAM, or memory-mapped copy-on-write), or None when there is no
    complete file of that shape."""
    if not file.is_file():
        return None
    try:
        array = np.load(file, mmap_mode="c")
    except (OSError, ValueError):
        return None
    if array.shape != shape or array.dtype != np.uint8:
        return None
    images = torch.from_numpy(array)
    return images.clone() if in_memory else images


def _write_rows(f, shape: tuple[int, ...], batches) -> None:
    """A .npy file of uint8 `shape`, its rows written batch by batch (no memory map: a full disk is
    an OSError here, not a crash)."""
    np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
    written = 0
    for batch in batches:
        f.write(batch.numpy().tobytes())
        written += len(batch)
    if written != shape[0]:
        raise RuntimeError(f"image cache: wrote {written} of {shape[0]} images")


def _write_atomic(file: Path, write, console, *, in_memory: bool) -> bool:
    """Write through a temporary file, fsync, then rename to `file`. An OSError (unwritable folder,
    full disk) is one warning and False; any other error removes the temporary file and propagates."""
    tmp = file.with_name(f"{file.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(file.parent)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
        return True
    except OSError as exc:
        from rich.markup import escape

        _say(console, f"[yellow]warning: cannot write the image cache in '{escape(str(file.parent))}' "
                      f"({escape(exc.strerror or str(exc))}); training goes on "
                      f"{'with the images in memory' if in_memory else 'without the cache'} (set data.cache_dir "
                      f"to a writable folder with space, or data.cache=memory)[/]")
        return False
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the folder itself is unusable: there is no temporary file
            pass


def _remove_stale_temps(folder: Path) -> None:
    """Temporary files left by builds killed more than a day ago (a build running now is younger)."""
    now = time.time()
    for tmp in folder.glob("*.tmp"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TEMP_SECONDS:
                tmp.unlink()
        except OSError:
            pass
