"""`report.html`: one self-contained page per run (no network: images are base64 data URIs,
CSS is inline, no fonts or scripts are fetched).

Reads, each optional: config.yaml, data.json, model_summary.json, model.png, metrics.json, plots/**.png,
inspect/**.png, evaluations/<stem>.json and evaluations/<stem>/plots/*.png.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;background:#f5f6f8;color:#1f2328}
header{background:#24292f;color:#fff;padding:20px 32px}
header h1{margin:0 0 4px;font-size:24px} header p{margin:0;color:#c9d1d9;font-size:14px}
nav{background:#fff;border-bottom:1px solid #d0d7de;padding:8px 32px;position:sticky;top:0;z-index:1}
nav a{margin-right:16px;color:#0969da;text-decoration:none;font-size:14px}
main{padding:8px 32px 40px;max-width:1400px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 20px;margin:18px 0}
h2{font-size:20px;border-bottom:1px solid #eaeef2;padding-bottom:6px} h3{font-size:17px;margin:18px 0 8px}
h4{font-size:15px;margin:14px 0 6px;color:#57606a}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left} th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.tables{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.gallery{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:0;border:1px solid #eaeef2;border-radius:6px;padding:8px;background:#fff;max-width:100%}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#57606a;margin-top:4px}
details{margin:4px 0 10px} summary{cursor:pointer;color:#0969da;font-size:13px}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:10px;overflow:auto;font-size:12px}
.muted{color:#57606a;font-size:13px}
"""


def write_report(run_dir: Path, *, title: str | None = None) -> Path:
    """Write `run_dir/report.html` from what the run folder holds; returns its path."""
    run_dir = Path(run_dir)
    metrics = _json(run_dir / "metrics.json") or {}
    sections = [
        ("metrics", "Metrics", _metrics_section(metrics)),
        ("training", "Learning curves", _gallery(sorted((run_dir / "plots" / "training").glob("*.png")), run_dir)),
        ("plots", "Evaluation plots", _plot_groups(run_dir)),
        ("evaluations", "Evaluations", _evaluations_section(run_dir)),
        ("inspect", "Data inspection", _gallery(sorted((run_dir / "inspect").rglob("*.png")), run_dir)),
        ("data", "Data", _data_section(_json(run_dir / "data.json"))),
        ("model", "Model", _model_section(_json(run_dir / "model_summary.json"), run_dir)),
        ("config", "Config", _config_section(run_dir / "config.yaml")),
    ]
    sections = [s for s in sections if s[2]]
    title = title or f"polyhead run: {run_dir.resolve().name}"
    facts = [f"folder {run_dir.resolve()}", f"report written {datetime.now():%Y-%m-%d %H:%M}"]
    if "epochs_run" in metrics:
        facts.append(f"{metrics['epochs_run']} epochs")
    if isinstance(metrics.get("training_seconds"), (int, float)):
        facts.append(f"{metrics['training_seconds']:.0f} s")
    nav = "".join(f'<a href="#{key}">{escape(name)}</a>' for key, name, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{escape(name)}</h2>{html}</section>' for key, name, html in sections)
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f'<body><header><h1>{escape(title)}</h1><p>{escape(" · ".join(facts))}</p></header>'
            f'<nav>{nav}</nav><main>{body}</main></body></html>\n')
    out = run_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


# ---- pieces --------------------------------------------------------------------------------------
def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="num">{escape(_fmt(v))}</td>' if isinstance(v, (int, float)) or v is None
        else f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: Path, run_dir: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    rel = path.relative_to(run_dir).as_posix() if path.is_relative_to(run_dir) else path.name
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(rel)}">'
            f"<figcaption>{escape(rel)}</figcaption></figure>")


_ORDER = ("losses", "metrics", "learning_rate", "task_weights", "confusion", "per_label", "roc_pr", "calibration",
          "worst")


def _plot_key(path: Path) -> tuple:
    """Learning curves in reading order; evaluation plots by task, then confusion/ROC, calibration, worst."""
    for rank, suffix in enumerate(_ORDER):
        if path.stem == suffix or path.stem.endswith("_" + suffix):
            return (path.parent.as_posix(), path.stem[: -len(suffix)], rank)
    return (path.parent.as_posix(), path.stem, len(_ORDER))


def _gallery(paths: list[Path], run_dir: Path) -> str:
    paths = sorted(paths, key=_plot_key)
    return f'<div class="gallery">{"".join(_image(p, run_dir) for p in paths)}</div>' if paths else ""


def _task_galleries(paths: list[Path], run_dir: Path) -> str:
    """Evaluation plots, one gallery per task (file names start with the task name)."""
    by_task: dict[str, list[Path]] = {}
    for png in sorted(paths, key=_plot_key):
        by_task.setdefault(_plot_key(png)[1].rstrip("_") or png.stem, []).append(png)
    return "".join(f"<h4>{escape(task)}</h4>{_gallery(pngs, run_dir)}" for task, pngs in by_task.items())


def _plot_groups(run_dir: Path) -> str:
    """PNGs under plots/ other than training/, one heading per sub-folder (test and val first)."""
    root = run_dir / "plots"
    if not root.is_dir():
        return ""
    groups: dict[str, list[Path]] = {}
    for png in sorted(root.rglob("*.png")):
        group = png.parent.relative_to(root).as_posix()
        if group != "training":
            groups.setdefault(group, []).append(png)
    order = sorted(groups, key=lambda g: ({"test": 0, "val": 1}.get(g, 2), g))
    heading = {"test": "split test", "val": "split val"}
    return "".join(f"<h3>{escape(heading.get(g, g))}</h3>{_task_galleries(groups[g], run_dir)}" for g in order)


def _task_tables(per_task: dict) -> str:
    """One table of scalar metrics per task; per-class / per-label rows in a collapsible block."""
    out = []
    for task, m in per_task.items():
        if not isinstance(m, dict):
            continue
        scalars = [[k, v] for k, v in m.items() if not isinstance(v, (dict, list))]
        html = f"<div><h3>{escape(task)}</h3>{_table(['metric', 'value'], scalars)}"
        for key in ("per_class", "per_label"):
            per = m.get(key)
            if isinstance(per, dict) and per:
                cols = list(next(iter(per.values())))
                rows = [[name] + [v.get(c) for c in cols] for name, v in per.items()]
                html += (f"<details><summary>{escape(key.replace('_', ' '))} ({len(per)})</summary>"
                         f"{_table([key[4:]] + cols, rows)}</details>")
        out.append(html + "</div>")
    return f'<div class="tables">{"".join(out)}</div>'


def _metrics_section(metrics: dict) -> str:
    parts = []
    for split in ("val", "test"):
        if isinstance(metrics.get(split), dict):
            name = "validation" if split == "val" else "test"
            parts.append(f"<h3>{name} split</h3>{_task_tables(metrics[split])}")
    return "".join(parts)


def _evaluations_section(run_dir: Path) -> str:
    root = run_dir / "evaluations"
    if not root.is_dir():
        return ""
    stems = sorted({p.stem for p in root.glob("*.json")} | {p.name for p in root.iterdir() if p.is_dir()})
    parts = []
    for stem in stems:
        saved = _json(root / f"{stem}.json") or {}
        html = f"<h3>{escape(stem)}</h3>"
        if saved.get("table"):
            html += f'<p class="muted">table: {escape(str(saved["table"]))}</p>'
        if isinstance(saved.get("metrics"), dict):
            html += _task_tables(saved["metrics"])
        html += _task_galleries(sorted((root / stem / "plots").glob("*.png")), run_dir)
        parts.append(html)
    return "".join(parts)


def _data_section(data: Any) -> str:
    if not isinstance(data, dict) or not data:
        return ""
    tasks: list[str] = []
    for info in data.values():
        tasks += [t for t in (info.get("labelled") or {}) if t not in tasks]
    rows = [[split, info.get("rows")] + [(info.get("labelled") or {}).get(t) for t in tasks]
            for split, info in data.items()]
    html = _table(["split", "rows"] + [f"labelled: {t}" for t in tasks], rows)
    sources = [[split, src, n] for split, info in data.items() for src, n in (info.get("sources") or {}).items()]
    if sources:
        html += (f"<details><summary>rows per source ({len(sources)})</summary>"
                 f"{_table(['split', 'source', 'rows'], sources)}</details>")
    return html


def _model_section(summary: Any, run_dir: Path | None = None) -> str:
    """model_summary.json: a list of {component, parameters, trainable[, macs]} rows, or a dict
    {"input_size": [C, H, W], "macs_per_image": int, "components": [rows][, "stages": [rows]]};
    the picture model.png first when the run folder has it."""
    if isinstance(summary, list):
        summary = {"components": summary}
    if not isinstance(summary, dict):
        return ""
    html = ""
    if run_dir is not None and (run_dir / "model.png").is_file():
        html += f'<div class="gallery">{_image(run_dir / "model.png", run_dir)}</div>'
    facts = []
    if summary.get("input_size"):
        facts.append(f"input size {' × '.join(str(x) for x in summary['input_size'])}")
    if isinstance(summary.get("macs_per_image"), (int, float)):
        facts.append(f"{_fmt(int(summary['macs_per_image']))} MACs per image")
    if facts:
        html += f'<p class="muted">{escape(" · ".join(facts))}</p>'
    rows = [r for r in summary.get("components") or [] if isinstance(r, dict)]
    if rows:
        cols = ["component", "parameters", "trainable"] + (["macs"] if any("macs" in r for r in rows) else [])
        html += _table(cols, [[r.get(c) for c in cols] for r in rows])
    stages = [r for r in summary.get("stages") or [] if isinstance(r, dict)]
    if stages:
        html += "<h3>backbone stages, bottom to top</h3>" + _table(
            ["stage", "output", "parameters", "trains", "lr multiplier"],
            [[r.get("stage", "") + (" (each branch)" if r.get("in") == "branches" else ""),
              "×".join(str(x) for x in r.get("output_shape") or []), r.get("parameters"), r.get("trains"),
              r.get("lr_multiplier") if r.get("trains") != "no" else None] for r in stages])
    return html


def _config_section(path: Path) -> str:
    if not path.is_file():
        return ""
    text = path.read_text()
    return (f"<details><summary>config.yaml, resolved ({len(text.splitlines())} lines)</summary>"
            f"<pre>{escape(text)}</pre></details>")
