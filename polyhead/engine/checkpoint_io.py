"""Checkpoints that survive a kill or a full disk, and that load without running pickled code.

`AtomicCheckpointIO` (a Lightning CheckpointIO plugin) writes `<name>.tmp-<pid>` in the
checkpoint folder, flushes and fsyncs it, then `os.replace`s it over `<name>`: a kill at any
moment leaves either the previous checkpoint or the new one, never a torn file. Temp files
left by a killed run are removed when the next Trainer starts.

A full disk (ENOSPC, EFBIG, EDQUOT) while writing a checkpoint or the bundle becomes a
one-line PolyheadError that says the previous `last.ckpt` is intact and how to resume.

`load_checkpoint_file` is the one way polyhead reads a .ckpt: torch.load(weights_only=True)
(tensors and plain containers only), with a refused or unreadable file turned into a
PolyheadError naming it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
from pathlib import Path
from typing import Any, Iterator

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from polyhead.errors import PolyheadError

DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
TEMP_MARK = ".tmp-"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def disk_full_error(file: Path | str, run_dir: Path, exc: OSError) -> PolyheadError:
    last = run_dir / "checkpoints" / "last.ckpt"
    return PolyheadError(
        f"no space left on the device writing '{file}' ({exc.strerror or exc}); the previous checkpoint "
        f"'{last}' is intact, free space and run `polyhead train --resume {run_dir}`")


@contextlib.contextmanager
def disk_full_guard(file: Path | str, run_dir: Path) -> Iterator[None]:
    """Turn a full disk while writing `file` (e.g. the bundle) into a PolyheadError."""
    try:
        yield
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise disk_full_error(file, run_dir, exc) from None
        raise


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete `*.tmp-<pid>` files a killed run left in `folder`; returns what was removed."""
    removed = []
    if folder.is_dir():
        for path in folder.iterdir():
            if TEMP_MARK in path.name and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def load_checkpoint_file(path: Path | str, map_location: Any = "cpu", mmap: bool = False) -> dict:
    """torch.load(weights_only=True); a file with pickled objects or an unreadable one -> PolyheadError."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise PolyheadError(f"checkpoint not found: '{path}'") from None
    except pickle.UnpicklingError as exc:  # weights_only refused a global: code would have run
        raise PolyheadError(f"'{path}' is not a plain checkpoint: it contains pickled objects polyhead does not "
                            f"load ({_first_line(exc)})") from None
    except Exception as exc:  # torn or foreign file: torch raises RuntimeError, EOFError, KeyError...
        raise PolyheadError(f"'{path}' is not a readable checkpoint ({_first_line(exc)}); "
                            f"it may be truncated or not a torch checkpoint") from None


def resume_epoch(ckpt: Path | str) -> int:
    """The epoch a run resumed from `ckpt` (written at a training epoch's end) starts with."""
    return int(load_checkpoint_file(ckpt, mmap=True).get("epoch", -1)) + 1


class AtomicCheckpointIO(TorchCheckpointIO):
    """Atomic, fsync'ed checkpoint writes; safe (weights_only) loads. `run_dir` is named in messages."""

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = Path(run_dir)
        remove_stale_temp_files(self.run_dir / "checkpoints")

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}")
        try:
            self._write(checkpoint, tmp)
            self._commit(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in DISK_FULL:
                raise disk_full_error(path, self.run_dir, exc) from None
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @staticmethod
    def _write(checkpoint: dict[str, Any], tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(checkpoint, fh)
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _commit(tmp: Path, path: Path) -> None:
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # make the rename itself durable (not possible on every OS)
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location=map_location if map_location is not None else "cpu")
