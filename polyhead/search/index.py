"""Nearest-neighbour search over an embeddings file, with faiss (docs/lifecycle.md says why faiss).

Cosine similarity: every vector is L2-normalised, then compared by inner product. The index is
built once and kept next to the Parquet file:

    emb.parquet        written by `polyhead embed`
    emb.faiss          the faiss index (row i is the Parquet file's row i)
    emb.faiss.json     the sha256 of the Parquet file it was built from, rows, dim, kind

It is rebuilt when the Parquet file changed (another sha256). Up to `EXACT_MAX_ROWS` rows the
index is exact (`IndexFlatIP`, a brute-force scan that takes milliseconds at that size); above,
an HNSW graph (`IndexHNSWFlat`, inner product) answers approximately in logarithmic time.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from polyhead.errors import PolyheadError
from polyhead.search.embeddings import IMAGE, EmbeddingInfo, iter_embeddings, read_info

EXACT_MAX_ROWS = 100_000
HNSW_NEIGHBORS, HNSW_EF_SEARCH = 32, 128


def _faiss():
    try:
        import faiss
    except ImportError:
        raise PolyheadError("similarity search needs faiss: pip install 'polyhead[search]' (faiss-cpu)") from None
    return faiss


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def normalized(vectors: np.ndarray) -> np.ndarray:
    """float32 [n, F] rows scaled to unit length (a zero row stays zero)."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


@dataclass
class Neighbor:
    rank: int  # 1 = most similar
    image: str
    score: float  # cosine similarity in [-1, 1]


class SimilarityIndex:
    """An embeddings file and its faiss index. `open` builds or reuses the index file."""

    def __init__(self, path: Path, info: EmbeddingInfo, index, images: list[str]):
        self.path, self.info, self.index, self.images = path, info, index, images

    @classmethod
    def open(cls, path: str | Path, *, dim: int | None = None, model: str | None = None) -> "SimilarityIndex":
        """`dim`, `model`: the querying model's feature size and fingerprint; an index from another
        model is refused with one line."""
        path = Path(path).expanduser()
        info = read_info(path)
        if dim is not None and info.dim != dim:
            raise PolyheadError(f"index '{path}' holds {info.dim}-dim embeddings but this model's features are "
                                f"{dim}-dim: it was written by another model; rebuild it with `polyhead embed` "
                                f"and this run")
        if model is not None and info.model != model:
            raise PolyheadError(f"index '{path}' was written by another model (backbone fingerprint {info.model}, "
                                f"this run's is {model}); rebuild it with `polyhead embed` and this run")
        faiss = _faiss()
        index_file, sidecar = path.with_suffix(".faiss"), path.with_suffix(".faiss.json")
        sha = _sha256(path)
        images = pq.read_table(path, columns=[IMAGE]).column(IMAGE).to_pylist()
        index = None
        if index_file.is_file() and sidecar.is_file():
            try:
                kept = json.loads(sidecar.read_text())
                if kept.get("parquet_sha256") == sha and kept.get("rows") == len(images):
                    index = faiss.read_index(str(index_file))
            except (ValueError, RuntimeError):
                index = None  # an unreadable index file is rebuilt
        if index is None:
            index = _build(faiss, path, info.dim)
            _save(faiss, index, index_file, sidecar, {"parquet_sha256": sha, "rows": len(images), "dim": info.dim,
                                                      "kind": type(index).__name__})
        if isinstance(index, faiss.IndexHNSWFlat):
            index.hnsw.efSearch = HNSW_EF_SEARCH
        return cls(path, info, index, images)

    def __len__(self) -> int:
        return len(self.images)

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[Neighbor]]:
        """queries float [Q, F] (not necessarily normalised) -> per query the k most similar rows."""
        if k < 1:
            raise PolyheadError(f"k={k}: expected a positive number of neighbours")
        k = min(k, len(self.images))
        scores, ids = self.index.search(normalized(queries), k)
        return [[Neighbor(rank + 1, self.images[i], float(s)) for rank, (i, s) in enumerate(zip(row_ids, row_scores))
                 if i >= 0] for row_ids, row_scores in zip(ids, scores)]


def _build(faiss, path: Path, dim: int):
    """The index of every row of the embeddings file, added batch by batch."""
    if pq.ParquetFile(path).metadata.num_rows <= EXACT_MAX_ROWS:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_NEIGHBORS, faiss.METRIC_INNER_PRODUCT)
    for _, vectors in iter_embeddings(path):
        index.add(normalized(vectors))
    return index


def _save(faiss, index, index_file: Path, sidecar: Path, meta: dict) -> None:
    """Both files written to temporary names and renamed, the sidecar last: a torn write is rebuilt."""
    tmp = index_file.with_name(index_file.name + ".partial")
    try:
        faiss.write_index(index, str(tmp))
        os.replace(tmp, index_file)
        tmp_meta = sidecar.with_name(sidecar.name + ".partial")
        tmp_meta.write_text(json.dumps(meta, indent=2))
        os.replace(tmp_meta, sidecar)
    except OSError as exc:  # a read-only folder: search still works from memory
        tmp.unlink(missing_ok=True)
        import warnings

        warnings.warn(f"could not keep the index next to the embeddings ({exc}); it is rebuilt on each use")
