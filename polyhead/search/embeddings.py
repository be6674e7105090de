"""Embedding files: the model's pooled shared features, one row per image, in Parquet.

    emb.parquet
      image      string                          the image's absolute path
      embedding  fixed_size_list<float32|float16>[F]  pooled `forward_features` (not normalised)
      schema metadata b"polyhead.embedding": {"dim": F, "dtype": ..., "model": fingerprint, "bundle": path}

The file is written batch by batch (memory does not grow with the number of images) to
`<out>.partial` and renamed when complete. `model` is the fingerprint of the bundle's
backbone weights: an index searched with another model's features is refused, not
silently wrong (a run made by `polyhead add-task` keeps its base run's backbone, so its
fingerprint and embeddings are the same).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from polyhead.errors import PolyheadError

META_KEY = b"polyhead.embedding"
IMAGE, EMBEDDING = "image", "embedding"
DTYPES = {"float32": (np.float32, pa.float32()), "float16": (np.float16, pa.float16())}


@dataclass
class EmbeddingInfo:
    """What an embedding file says about itself (its schema metadata)."""

    dim: int
    dtype: str
    model: str  # fingerprint of the backbone weights (see `model_fingerprint`)
    bundle: str = ""


def model_fingerprint(bundle_dir: str | Path) -> str:
    """sha256 (first 16 hex digits) of the bundle's backbone weights file: equal for two bundles
    whose shared features are equal (a run and the runs `add-task` made from it)."""
    digest = hashlib.sha256()
    with open(Path(bundle_dir) / "backbone.safetensors", "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def pooled_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """uint8 images [B, C, H, W] -> pooled shared features float [B, F]. With a branch point
    `forward_features` is the shared trunk's map [B, C, h, w]: it is average-pooled to [B, C]."""
    features = model.forward_features(images)
    if features.dim() == 4:
        features = F.adaptive_avg_pool2d(features, 1).flatten(1)
    return features.float()


def check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise PolyheadError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")


def write_embeddings(batches: Iterable[tuple[list[str], torch.Tensor]], out: str | Path, info: EmbeddingInfo) -> int:
    """Stream (paths, features [B, F]) batches into `out` (.parquet); returns the rows written.
    Raises PolyheadError when no batch holds a row (no image could be embedded)."""
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise PolyheadError(f"--out '{out}': an embeddings file is Parquet; use a .parquet file name")
    check_dtype(info.dtype)
    np_dtype, arrow_dtype = DTYPES[info.dtype]
    schema = pa.schema([pa.field(IMAGE, pa.string()), pa.field(EMBEDDING, pa.list_(arrow_dtype, info.dim))],
                       metadata={META_KEY: json.dumps(info.__dict__).encode()})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    written = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for paths, features in batches:
                if not paths:
                    continue
                values = pa.array(features.detach().cpu().numpy().astype(np_dtype).ravel(), type=arrow_dtype)
                column = pa.FixedSizeListArray.from_arrays(values, info.dim)
                writer.write_table(pa.Table.from_arrays([pa.array(paths, pa.string()), column], schema=schema))
                written += len(paths)
        if written == 0:
            raise PolyheadError(f"no image could be embedded: nothing written to '{out}'")
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written


def read_info(path: str | Path) -> EmbeddingInfo:
    """The metadata of an embeddings file, with one-line errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise PolyheadError(f"no embeddings file at '{path}': write one with `polyhead embed RUN --images DIR "
                            f"--out {path}`")
    try:
        meta = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError) as exc:
        raise PolyheadError(f"cannot read '{path}' as Parquet: {exc}") from None
    if META_KEY not in meta:
        raise PolyheadError(f"'{path}' is not an embeddings file written by `polyhead embed` "
                            f"(no {META_KEY.decode()} metadata)")
    return EmbeddingInfo(**json.loads(meta[META_KEY]))


def iter_embeddings(path: str | Path, batch_rows: int = 65536) -> Iterator[tuple[list[str], np.ndarray]]:
    """(paths, float32 [n, F]) batches of an embeddings file, in file order."""
    info = read_info(path)
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=[IMAGE, EMBEDDING]):
        flat = batch.column(EMBEDDING).flatten().to_numpy(zero_copy_only=False)
        yield batch.column(IMAGE).to_pylist(), flat.astype(np.float32).reshape(-1, info.dim)


def embedding_batches(model: torch.nn.Module, loader: Iterable, paths: list[str], *, device: torch.device,
                      show_progress: bool = True, bad: list[str] | None = None) -> Iterator[tuple[list[str], torch.Tensor]]:
    """(paths, pooled features float [B, F] on the CPU) per batch of a loader over `paths` (a split's
    paths, indexed by `batch["index"]`). Rows of unreadable images (a dataset with on_bad_image="skip")
    are left out and their paths appended to `bad`."""
    from polyhead.engine.evaluation import progress_bar
    from polyhead.engine.precision import autocast

    model.eval().to(device)
    with torch.inference_mode(), progress_bar(show_progress) as bar:
        job = bar.add_task("embedding", total=len(loader) if hasattr(loader, "__len__") else None)
        for batch in loader:
            with autocast(device):
                features = pooled_features(model, batch["image"].to(device, non_blocking=True)).cpu()
            errors = batch.get("error") or [""] * len(features)
            keep = [i for i, e in enumerate(errors) if not e]
            batch_paths = [paths[i] for i in batch["index"].tolist()]
            if bad is not None:
                bad += [p for p, e in zip(batch_paths, errors) if e]
            yield [batch_paths[i] for i in keep], features[keep]
            bar.advance(job)
