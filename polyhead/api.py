"""The Python surface for the common case:

    run = polyhead.fit("my.yaml", ["training.epochs=3"])
    predictor = polyhead.load(run.run_dir)
    df = predictor.predict("photos/")            # or a table, an image file, or a list of paths
    metrics = predictor.evaluate("test.parquet")

For a hand-written loop, use the pieces directly: `polyhead.tasks`, `polyhead.data`,
`polyhead.model`, `polyhead.weighting` (see docs/python-api.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from torch.utils.data import DataLoader

from polyhead.config.loading import from_yaml_text, load_config
from polyhead.config.schema import Config
from polyhead.data.dataset import EncodedSplit, MultiTaskDataset, encode_table, unlabelled_split
from polyhead.data.tables import IMAGE_EXTENSIONS, read_table, read_table_chunks
from polyhead.engine.devices import resolve_device
from polyhead.engine.evaluation import evaluate_model, predict_batches
from polyhead.engine.predictions import ERROR, output_format, prediction_frame, write_predictions
from polyhead.errors import PolyheadError
from polyhead.model.bundle import Bundle, load_bundle

if TYPE_CHECKING:  # Lightning loads with training, not with prediction
    from polyhead.engine.fit import RunResult
    from polyhead.engine.kfold import KFoldResult


def fit(config: str | Path | Config, overrides: Sequence[str] = (), *,
        console: Console | None = None) -> RunResult | KFoldResult:
    """Train from a YAML path (plus Hydra-style overrides) or a ready `Config`.

    With `data.folds: K` (and no `data.fold`) it trains one model per fold and returns a
    `KFoldResult` (polyhead.engine.kfold): `run_dir` (the parent folder), `folds` (each fold's
    run folder, status and metrics), `summary` (mean and std per metric) and `metrics` (the
    means, shaped like a single run's); a fold that failed is in `failed`, not raised."""
    from polyhead.engine.fit import fit as _fit

    if isinstance(config, Config):
        cfg, hint = config, "run"
    else:
        cfg, hint = load_config(config, overrides), Path(config).stem
    if cfg.data.folds and cfg.data.fold is None:
        from polyhead.engine.kfold import fit_folds

        return fit_folds(cfg, console=console, name_hint=hint)
    return _fit(cfg, console=console, name_hint=hint)


def list_images(folder: Path) -> tuple[list[str], int]:
    """(image files under `folder`, recursively, sorted; how many other files were left out)."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    images = sorted(str(p.resolve()) for p in files if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise PolyheadError(f"no images found under '{folder}' (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return images, len(files) - len(images)


@dataclass
class PredictionSummary:
    """What `Predictor.predict_to_file` wrote: `rows`, of which `bad_images` could not be read (their
    `error` cell says why), and `ignored_files`: files of an image folder that are not images."""

    out: str
    rows: int
    bad_images: int = 0
    ignored_files: int = 0


class PredictionStream:
    """The prediction DataFrames of one source, one per batch (see polyhead.engine.predictions).

    Counts as it goes: `bad_images` (rows written with an `error`) and `ignored_files` (files of an
    image folder left out because their extension is not an image's)."""

    def __init__(self, frames: Iterable[pd.DataFrame], ignored_files: int = 0):
        self._frames, self.ignored_files, self.bad_images = frames, ignored_files, 0

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for frame in self._frames:
            self.bad_images += int(frame[ERROR].notna().sum())
            yield frame


class Predictor:
    """A loaded bundle plus the run's data settings (image column, root).

    `run_dir`: the run folder the bundle belongs to (where `evaluate` writes), or the bundle
    folder itself when it stands alone. With `runner` (an onnxruntime OnnxRunner, see
    `load(..., backend="onnx")`) predictions come from the exported graph instead of the bundle's
    model; `bundle` may then be None."""

    def __init__(self, bundle: Bundle | None, device: torch.device, config: Config | None = None,
                 run_dir: Path | None = None, *, runner=None):
        self.bundle, self.device, self.config, self.run_dir = bundle, device, config, run_dir
        self._index_path: Path | None = None  # the embeddings file `similar` searches by default
        self._indexes: dict = {}  # embeddings file -> its open SimilarityIndex
        self._model_fingerprint: str | None = None
        if runner is not None:
            self.model, self.tasks = runner, runner.tasks
            self.channels, self.image_size = runner.channels, tuple(runner.image_size)
        else:
            self.model = bundle.model.to(device).use_channels_last(True).eval()
            self.tasks = bundle.tasks
            self.channels, self.image_size = bundle.prep.channels, tuple(bundle.prep.image_size)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", backend: str = "torch") -> "Predictor":
        """`path`: a run folder, or a bundle folder (RUN/model or one that stands alone).
        `backend="onnx"`: run the graph written by `polyhead export` (a run folder, its export
        folder or a model.onnx file) with onnxruntime on the CPU. `device`: auto, cpu, cuda (or gpu),
        cuda:N or mps (see polyhead.engine.devices)."""
        if backend == "onnx":
            return cls._load_onnx(path, device)
        if backend != "torch":
            raise PolyheadError(f"--backend {backend!r}: expected torch or onnx")
        target = resolve_device(device)  # before any work: a device this machine lacks is one line
        bundle = load_bundle(path)
        config, run_dir = _run_config(path)
        return cls(bundle, target, config, run_dir or Path(path))

    @classmethod
    def _load_onnx(cls, path: str | Path, device: str) -> "Predictor":
        from polyhead.export.runtime import OnnxRunner

        if device not in ("auto", "cpu"):
            raise PolyheadError(f"--device {device}: the onnx backend runs on the CPU (onnxruntime's CPU provider); "
                                "use --device cpu or --backend torch")
        runner = OnnxRunner(path)
        config, run_dir = _run_config(path)
        exported = runner.path.parent.parent  # RUN/export/onnx/model.onnx -> RUN/export
        if config is None and exported.name == "export":
            config, run_dir = _run_config(exported.parent)
        return cls(None, torch.device("cpu"), config, run_dir, runner=runner)

    def _loader(self, split, batch_size: int, num_workers: int, on_bad_image: str = "error") -> DataLoader:
        ds = MultiTaskDataset(split, channels=self.channels, size=self.image_size, on_bad_image=on_bad_image)
        return DataLoader(ds, batch_size=batch_size, num_workers=num_workers,
                          pin_memory=self.device.type == "cuda")

    def _read(self, table: str | Path, image_column: str | None, root: str | None):
        d = self.config.data if self.config else None
        return read_table(table, image_column=image_column or (d.image_column if d else "image"), root=root,
                          folder_task=d.folder_task if d else "label",
                          image_column_from="--image-column, or image_column= in Python; default: the run's "
                                            "data.image_column")

    def evaluate(self, table: str | Path, *, image_column: str | None = None, root: str | None = None,
                 batch_size: int = 128, num_workers: int = 0, show_progress: bool = True,
                 plots_dir: str | Path | None = None) -> dict:
        """Metrics per task on a labelled table (rows without a task's label are not scored for it).

        `plots_dir`: also write the evaluation plots there (confusion matrices, ROC/PR, calibration,
        worst-classified images; see polyhead.reports.evaluation)."""
        if self.bundle is None:
            raise PolyheadError("evaluate runs the PyTorch model: load the run with backend='torch'")
        tasks = self.tasks
        labelled = self._read(table, image_column, root)
        present = {n: t for n, t in tasks.items() if t.column in labelled.frame.columns}
        if not present:
            cols = ", ".join(t.column for t in tasks.values())
            raise PolyheadError(f"table '{table}' has none of the model's label columns ({cols})")
        split = encode_table(labelled, present)
        metrics, outputs = evaluate_model(self.model, present, self._loader(split, batch_size, num_workers),
                                          device=self.device, show_progress=show_progress, return_outputs=True)
        if plots_dir is not None:
            from polyhead.config.schema import ReportConfig
            from polyhead.reports.evaluation import plot_evaluation

            r = self.config.report if self.config is not None else ReportConfig()
            plot_evaluation(outputs, present, split.paths, Path(plots_dir), worst=r.worst_examples,
                            max_annotated=r.max_classes_annotated)
        return metrics

    def _source_splits(self, source, image_column, root, chunk_rows: int) -> tuple[Iterable[EncodedSplit], int]:
        """(the images to predict, in splits of at most `chunk_rows`; files left out of a folder).
        `source`: a list of image paths, an image file, a folder (searched recursively) or a table
        with an image column (read in chunks: memory does not grow with its length)."""
        if isinstance(source, (list, tuple)):
            return [unlabelled_split([str(Path(p).expanduser().resolve()) for p in source])], 0
        path = Path(source).expanduser()
        if path.is_dir():
            images, ignored = list_images(path)
            return [unlabelled_split(images, str(path))], ignored
        if not path.exists():
            raise PolyheadError(f"no such file or folder: '{path}'")
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return [unlabelled_split([str(path.resolve())], str(path))], 0
        d = self.config.data if self.config else None
        chunks = read_table_chunks(path, chunk_rows, image_column=image_column or (d.image_column if d else "image"),
                                   root=root, folder_task=d.folder_task if d else "label",
                                   image_column_from="--image-column, or image_column= in Python; default: the "
                                                     "run's data.image_column")
        return (_table_split(chunk, str(path)) for chunk in chunks), 0

    def iter_predictions(self, source: str | Path | Sequence[str], *, image_column: str | None = None,
                         root: str | None = None, batch_size: int = 128, num_workers: int = 0,
                         show_progress: bool = True, on_bad_image: str = "skip",
                         chunk_rows: int = 50_000) -> PredictionStream:
        """One DataFrame of predictions per batch, in the source's order: `image`, `row`, each task's
        columns, `error`.

        `source`: an image file, a list of image paths, a folder of images or a table (read
        `chunk_rows` rows at a time, so a table of millions of rows needs no more memory than one
        chunk). `on_bad_image`: "skip" (an unreadable image gets a row with its reason in `error`
        and null predictions) or "error" (the first one stops with an ImageError naming it)."""
        if on_bad_image not in ("error", "skip"):
            raise PolyheadError(f"on_bad_image={on_bad_image!r}: expected 'error' or 'skip'")
        if chunk_rows < 1:
            raise PolyheadError(f"chunk_rows={chunk_rows}: expected a positive number of rows")
        splits, ignored = self._source_splits(source, image_column, root, chunk_rows)
        total = -(-len(splits[0]) // batch_size) if isinstance(splits, list) else None  # unknown for a table
        return PredictionStream(self._frames(splits, batch_size, num_workers, on_bad_image, show_progress, total),
                                ignored)

    def _frames(self, splits: Iterable[EncodedSplit], batch_size: int, num_workers: int, on_bad_image: str,
                show_progress: bool, total: int | None) -> Iterator[pd.DataFrame]:
        def batches() -> Iterator[dict]:
            for split in splits:  # one loader (and worker start) per chunk
                for batch in self._loader(split, batch_size, num_workers, on_bad_image):
                    batch["path"] = [split.paths[i] for i in batch["index"].tolist()]
                    yield batch

        for batch, columns in predict_batches(self.model, self.tasks, batches(), device=self.device,
                                              show_progress=show_progress, total=total):
            errors = batch.get("error") or [""] * len(batch["path"])
            yield prediction_frame(batch["path"], batch["row"].tolist(), columns, list(errors))

    def write_shard(self, source, folder: str | Path, shard: tuple[int, int], *, image_column: str | None = None,
                    root: str | None = None, batch_size: int = 128, num_workers: int = 0,
                    on_bad_image: str = "skip", chunk_rows: int = 50_000) -> PredictionSummary:
        """Process shard[0]'s share of shard[1] (`polyhead predict --devices N`): of each chunk of the
        source, its contiguous slice, written to folder/part-<chunk>-<shard>.parquet. The parts in
        name order are the source's rows in order (polyhead.engine.sharded_predict merges them)."""
        k, n = shard
        splits, ignored = self._source_splits(source, image_column, root, chunk_rows)
        rows = bad = 0
        for c, split in enumerate(splits):
            a, b = len(split) * k // n, len(split) * (k + 1) // n
            part = unlabelled_split(split.paths[a:b], split.source)
            part.rows = np.asarray(split.rows)[a:b]
            stream = PredictionStream(self._frames([part], batch_size, num_workers, on_bad_image, False, None))
            rows += write_predictions(stream, Path(folder) / f"part-{c:06d}-{k:04d}.parquet", self.tasks)
            bad += stream.bad_images
        return PredictionSummary(str(folder), rows, bad, ignored)

    def predict(self, source, **kwargs) -> pd.DataFrame:
        """All predictions in one DataFrame (see `iter_predictions` for the arguments and columns)."""
        frames = list(self.iter_predictions(source, **kwargs))
        return pd.concat(frames, ignore_index=True)

    def predict_to_file(self, source, out: str | Path, **kwargs) -> PredictionSummary:
        """Stream predictions to Parquet (.parquet), CSV (.csv) or CSV on stdout ("-"); the file
        appears only when complete (polyhead.engine.predictions)."""
        output_format(out)  # a bad name fails before any image is read
        stream = self.iter_predictions(source, **kwargs)
        rows = write_predictions(stream, out, self.tasks)
        return PredictionSummary(str(out), rows, stream.bad_images, stream.ignored_files)

    # ---- shared embeddings and similarity search (polyhead.search) -------------------------------
    def _torch_bundle(self, what: str) -> Bundle:
        if self.bundle is None:
            raise PolyheadError(f"{what} runs the PyTorch model: load the run with backend='torch'")
        return self.bundle

    def _fingerprint(self) -> str:
        from polyhead.search import model_fingerprint

        bundle = self._torch_bundle("similarity search")
        if self._model_fingerprint is None:
            self._model_fingerprint = model_fingerprint(bundle.path)
        return self._model_fingerprint

    def embed_to_file(self, source, out: str | Path, *, dtype: str = "float32", image_column: str | None = None,
                      root: str | None = None, batch_size: int = 128, num_workers: int = 0,
                      show_progress: bool = True, chunk_rows: int = 50_000) -> EmbeddingSummary:
        """Write the pooled shared features of every image of `source` (an image, a list of paths, a
        folder or a table) to the Parquet file `out`, batch by batch (polyhead.search.embeddings).
        `dtype`: float32 or float16. Unreadable images are left out and counted."""
        from polyhead.search.embeddings import EmbeddingInfo, check_dtype, embedding_batches, write_embeddings

        bundle = self._torch_bundle("embed")
        check_dtype(dtype)
        splits, ignored = self._source_splits(source, image_column, root, chunk_rows)
        info = EmbeddingInfo(dim=self._feature_dim(), dtype=dtype, model=self._fingerprint(), bundle=str(bundle.path))
        bad: list[str] = []

        def batches():  # a table is read chunk by chunk, one loader per chunk (as iter_predictions)
            for split in splits:
                loader = self._loader(split, batch_size, num_workers, on_bad_image="skip")
                yield from embedding_batches(self.model, loader, split.paths, device=self.device,
                                             show_progress=show_progress, bad=bad)

        rows = write_embeddings(batches(), out, info)
        self._index_path = Path(out).expanduser().resolve()
        self._indexes.pop(self._index_path, None)  # rewritten: reopen (and rebuild) its index on next use
        return EmbeddingSummary(str(out), rows, info.dim, bad, ignored)

    def _feature_dim(self) -> int:
        """F of the pooled shared features: the backbone's, or the trunk's channels at a branch point."""
        from polyhead.search.embeddings import pooled_features

        with torch.inference_mode():
            probe = torch.zeros((1, self.channels, *self.image_size), dtype=torch.uint8, device=self.device)
            return int(pooled_features(self.model.eval(), probe).shape[1])

    def similar(self, image: str | Path | Sequence[str], k: int = 10, *, index: str | Path | None = None) -> pd.DataFrame:
        """The k images of an embeddings file (`index`, written by `polyhead embed`; default: the
        last one this Predictor wrote or searched) most similar to `image` (a path, or a list of
        paths) by cosine similarity of the pooled shared features. Columns: query, rank (1 = most
        similar), image, score. The faiss index is built once next to the file (polyhead.search.index)."""
        from polyhead.search import SimilarityIndex
        from polyhead.search.embeddings import embedding_batches

        self._torch_bundle("similar")
        path = Path(index).expanduser().resolve() if index is not None else self._index_path
        if path is None:
            raise PolyheadError("no index to search: pass index='emb.parquet' (a file written by `polyhead embed` "
                                "or Predictor.embed_to_file)")
        if path not in self._indexes:
            self._indexes[path] = SimilarityIndex.open(path, dim=self._feature_dim(), model=self._fingerprint())
        self._index_path = path
        queries = [image] if isinstance(image, (str, Path)) else list(image)
        for q in queries:
            if not Path(q).expanduser().is_file():
                raise PolyheadError(f"no such image file: '{q}'")
        split = unlabelled_split([str(Path(q).expanduser().resolve()) for q in queries])
        loader = self._loader(split, 64, 0)  # on_bad_image="error": an unreadable query is one line
        features = torch.cat([f for _, f in embedding_batches(self.model, loader, split.paths, device=self.device,
                                                                show_progress=False)])
        rows = [{"query": str(q), "rank": n.rank, "image": n.image, "score": n.score}
                for q, found in zip(queries, self._indexes[path].search(features.numpy(), k)) for n in found]
        return pd.DataFrame(rows, columns=["query", "rank", "image", "score"])


@dataclass
class EmbeddingSummary:
    """What `Predictor.embed_to_file` wrote: `rows` of `dim` features; `bad_images`: the paths left
    out because they could not be read; `ignored_files`: files of a folder that are not images."""

    out: str
    rows: int
    dim: int
    bad_images: list[str]
    ignored_files: int = 0


def _table_split(chunk, source: str) -> EncodedSplit:
    split = unlabelled_split(chunk.paths, source)
    split.rows = chunk.frame.index.to_numpy()
    return split


def _run_config(path: str | Path) -> tuple[Config | None, Path | None]:
    """(the run's config, the run folder) from config.yaml in a run folder or beside a bundle
    folder (data settings: image column, root); (None, None) when there is none."""
    for candidate in (Path(path) / "config.yaml", Path(path).parent / "config.yaml"):
        if candidate.is_file():
            return from_yaml_text(candidate.read_text()), candidate.parent
    return None, None


def load(path: str | Path, device: str = "auto", backend: str = "torch") -> Predictor:
    """Load a run folder or bundle folder for prediction and evaluation (backend: torch or onnx)."""
    return Predictor.load(path, device, backend)
