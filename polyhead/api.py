"""The Python surface for the common case:

    run = polyhead.fit("my.yaml", ["training.epochs=3"])
    predictor = polyhead.load(run.run_dir)
    df = predictor.predict("photos/")            # or a table, or a list of paths
    metrics = predictor.evaluate("test.parquet")

For a hand-written loop, use the pieces directly: `polyhead.tasks`, `polyhead.data`,
`polyhead.model`, `polyhead.weighting` (see docs/python-api.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from rich.console import Console
from torch.utils.data import DataLoader

from polyhead.config.loading import from_yaml_text, load_config
from polyhead.config.schema import Config
from polyhead.data.dataset import MultiTaskDataset, encode_table, unlabelled_split
from polyhead.data.tables import IMAGE, IMAGE_EXTENSIONS, read_table
from polyhead.engine.evaluation import evaluate_model, predict_batches
from polyhead.errors import PolyheadError
from polyhead.model.bundle import Bundle, load_bundle

if TYPE_CHECKING:  # Lightning loads with training, not with prediction
    from polyhead.engine.fit import RunResult


def fit(config: str | Path | Config, overrides: Sequence[str] = (), *, console: Console | None = None) -> RunResult:
    """Train from a YAML path (plus Hydra-style overrides) or a ready `Config`."""
    from polyhead.engine.fit import fit as _fit

    if isinstance(config, Config):
        cfg, hint = config, "run"
    else:
        cfg, hint = load_config(config, overrides), Path(config).stem
    return _fit(cfg, console=console, name_hint=hint)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PolyheadError(f"--device {device}: no CUDA device is available here; use --device cpu")
    return torch.device(device)


def list_images(folder: Path) -> list[str]:
    files = sorted(str(p.resolve()) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise PolyheadError(f"no images found under '{folder}' (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


class Predictor:
    """A loaded bundle plus the run's data settings (image column, root)."""

    def __init__(self, bundle: Bundle, device: torch.device, config: Config | None = None):
        self.bundle, self.device, self.config = bundle, device, config
        self.model = bundle.model.to(device).use_channels_last(True).eval()
        self.tasks = bundle.tasks

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "Predictor":
        bundle = load_bundle(path)
        config = None
        for candidate in (Path(path) / "config.yaml", Path(path).parent / "config.yaml"):
            if candidate.is_file():
                config = from_yaml_text(candidate.read_text())
                break
        return cls(bundle, resolve_device(device), config)

    def _loader(self, split, batch_size: int, num_workers: int) -> DataLoader:
        p = self.bundle.prep
        ds = MultiTaskDataset(split, channels=p.channels, size=tuple(p.image_size))
        return DataLoader(ds, batch_size=batch_size, num_workers=num_workers,
                          pin_memory=self.device.type == "cuda")

    def _read(self, table: str | Path, image_column: str | None, root: str | None):
        d = self.config.data if self.config else None
        return read_table(table, image_column=image_column or (d.image_column if d else "image"), root=root,
                          folder_task=d.folder_task if d else "label")

    def evaluate(self, table: str | Path, *, image_column: str | None = None, root: str | None = None,
                 batch_size: int = 128, num_workers: int = 0, show_progress: bool = True,
                 plots_dir: str | Path | None = None) -> dict:
        """Metrics per task on a labelled table (rows without a task's label are not scored for it).

        `plots_dir`: also write the evaluation plots there (confusion matrices, ROC/PR, calibration,
        worst-classified images; see polyhead.reports.evaluation)."""
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

    def _source_split(self, source, image_column, root):
        if isinstance(source, (list, tuple)):
            return unlabelled_split([str(Path(p).resolve()) for p in source])
        path = Path(source).expanduser()
        if path.is_dir():
            return unlabelled_split(list_images(path), str(path))
        if not path.exists():
            raise PolyheadError(f"no such file or folder: '{path}'")
        table = self._read(path, image_column, root)
        split = unlabelled_split(table.paths, str(path))
        split.rows = table.frame.index.to_numpy()
        return split

    def iter_predictions(self, source: str | Path | Sequence[str], *, image_column: str | None = None,
                         root: str | None = None, batch_size: int = 128, num_workers: int = 0,
                         show_progress: bool = True) -> Iterable[pd.DataFrame]:
        """Yield one DataFrame of predictions per batch: `image`, `row`, then each task's columns."""
        split = self._source_split(source, image_column, root)
        loader = self._loader(split, batch_size, num_workers)
        for batch, columns in predict_batches(self.model, self.tasks, loader, device=self.device,
                                              show_progress=show_progress):
            paths = [split.paths[i] for i in batch["index"].tolist()]
            yield pd.DataFrame({IMAGE: paths, "row": batch["row"].tolist(), **columns})

    def predict(self, source, **kwargs) -> pd.DataFrame:
        frames = list(self.iter_predictions(source, **kwargs))
        return pd.concat(frames, ignore_index=True)

    def predict_to_file(self, source, out: str | Path, **kwargs) -> int:
        """Stream predictions to Parquet (.parquet) or CSV (.csv); returns the number of rows written."""
        out = Path(out)
        fmt = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}.get(out.suffix.lower())
        if fmt is None:
            raise PolyheadError(f"--out '{out}': use a .parquet or .csv file name")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".partial")
        written, writer = 0, None
        try:
            for frame in self.iter_predictions(source, **kwargs):
                if fmt == "parquet":
                    batch = pa.Table.from_pandas(frame, preserve_index=False)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, batch.schema)
                    writer.write_table(batch)
                else:
                    for col in frame.columns:
                        if len(frame) and isinstance(frame[col].iloc[0], list):
                            frame[col] = [json.dumps(v) for v in frame[col]]
                    frame.to_csv(tmp, mode="a" if written else "w", header=not written, index=False)
                written += len(frame)
        finally:
            if writer is not None:
                writer.close()
        tmp.replace(out)
        return written


def load(path: str | Path, device: str = "auto") -> Predictor:
    """Load a run folder or bundle folder for prediction and evaluation."""
    return Predictor.load(path, device)
