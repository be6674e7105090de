"""The command line: user mistakes end in one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from conftest import make_dataset, write_config
from polyhead.cli.main import main


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "polyhead", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_unknown_key_is_one_line_in_a_real_process(dataset):
    proc = run_cli("train", dataset / "config.yaml", "training.epoch=3")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        proc.stderr.strip()] and "unknown config key 'training.epoch'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_and_version():
    proc = run_cli("--help")
    assert proc.returncode == 0 and all(v in proc.stdout for v in ("train", "evaluate", "predict", "prepare"))
    assert run_cli("--version").stdout.startswith("polyhead ")


@pytest.mark.parametrize("argv, expected", [
    (["evaluate", "{tmp}/nope", "--table", "{tmp}/labels.csv"], "no model bundle at"),
    (["prepare", "imagenet", "{tmp}/out"], "unknown dataset 'imagenet'"),
    (["train", "{tmp}/config.yaml", "data.train_table={tmp}/missing.csv"], "table not found"),
    (["train", "{tmp}/config.yaml", "data.image_column=path"], "no image column 'path'"),
    (["train", "{tmp}/config.yaml", "tasks.quadrant.type=binary"], "binary task 'quadrant'.*4"),
])
def test_user_errors(dataset, capsys, argv, expected):
    import re

    argv = [a.replace("{tmp}", str(dataset)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(expected, err), err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("workers", [0, 1])
def test_bad_image_mid_training_is_one_line(dataset, capsys, workers):
    (dataset / "images" / "0003.png").write_text("not a png")
    argv = ["train", str(dataset / "config.yaml"), f"data.num_workers={workers}", f"output_dir={dataset / 'runs'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot read image" in err and "0003.png" in err, err


def test_predict_errors(dataset, capsys):
    from conftest import write_config

    write_config(dataset / "config.yaml", "labels.csv", epochs=1)
    assert main(["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=r"]) == 0
    (dataset / "empty").mkdir()
    assert main(["predict", str(dataset / "runs" / "r"), "--images", str(dataset / "empty"),
                 "--out", str(dataset / "p.parquet")]) == 2
    assert "no images found" in capsys.readouterr().err
    assert main(["predict", str(dataset / "runs" / "r"), "--images", str(dataset / "images"),
                 "--out", str(dataset / "p.txt")]) == 2
    assert "use a .parquet or .csv" in capsys.readouterr().err
    assert not (dataset / "p.txt").exists()


def test_evaluate_names_tasks_it_cannot_score(dataset, capsys):
    import pandas as pd

    from conftest import write_config

    write_config(dataset / "config.yaml", "labels.csv", epochs=1)
    assert main(["train", str(dataset / "config.yaml"), f"output_dir={dataset / 'runs'}", "run_name=r"]) == 0
    pd.read_csv(dataset / "labels.csv").drop(columns=["red"]).to_csv(dataset / "partial.csv", index=False)
    capsys.readouterr()
    assert main(["evaluate", str(dataset / "runs" / "r"), "--table", str(dataset / "partial.csv"),
                 "--num-workers", "0"]) == 0
    assert "not scored: red (no column 'red')" in capsys.readouterr().out


# ---- flags anywhere after the verb -------------------------------------------------------------
def test_flags_between_config_and_overrides(dataset):
    """`train my.yaml --print-config KEY=VALUE` and docs/compare.md's `compare my.yaml --inference-iters 50
    KEY=VALUE`: the flag is read as a flag and the override after it as an override."""
    proc = run_cli("train", dataset / "config.yaml", "--print-config", "training.epochs=3", "optimizer.lr=0.5")
    assert proc.returncode == 0, proc.stderr
    assert "  epochs: 3\n" in proc.stdout and "  lr: 0.5\n" in proc.stdout
    # an override the config rejects proves it reached the config, past the flag and its value
    proc = run_cli("compare", dataset / "config.yaml", "--inference-iters", "50", "training.epochs=abc")
    assert proc.returncode == 2 and "unrecognized arguments" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "polyhead compare: error: bad value for config key 'training.epochs' (command line 'training.epochs=abc'): "
        "Value 'abc' of type 'str' could not be converted to Integer"]


# ---- a whole `train` run with stdout piped (a log file, nohup, CI) ----------------------------------
@pytest.fixture(scope="module")
def piped_run(tmp_path_factory):
    """`polyhead train` for 2 epochs, stdout a pipe, progress bars on (the default): (run folder, stdout)."""
    folder = tmp_path_factory.mktemp("piped")
    make_dataset(folder, n=40).to_csv(folder / "labels.csv", index=False)
    write_config(folder / "config.yaml", "labels.csv", epochs=2)
    proc = run_cli("train", folder / "config.yaml", "training.progress_bar=true", "run_name=r",
                   "tracking.enabled=false", "report.enabled=false", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder / "runs" / "r", proc.stdout


EPOCH_LINE = re.compile(r"epoch (?P<epoch>\d+)/2 \| \d+\.\d s \| \d+ img/s \| (?P<values>.*?)(?: \| ETA (?P<eta>.+))?")


def test_piped_train_prints_one_line_per_epoch(piped_run):
    """Between the model table and the final metrics: one line per epoch with its number, time, images/s,
    train and val loss, each task's main metric (validation) and, but for the last, the time left."""
    run, out = piped_run
    lines = out.splitlines()
    epoch_lines = [i for i, line in enumerate(lines) if line.startswith("epoch ")]
    model_table_end = next(i for i, line in enumerate(lines) if line.startswith("└"))
    final_metrics = next(i for i, line in enumerate(lines) if line.startswith("val metrics"))
    assert len(epoch_lines) == 2 and model_table_end < epoch_lines[0] < epoch_lines[1] < final_metrics, out
    history = pd.read_csv(run / "history.csv")
    for i, (_, row) in zip(epoch_lines, history.iterrows()):
        m = EPOCH_LINE.fullmatch(lines[i])
        assert m and int(m["epoch"]) == row["epoch"], lines[i]
        values = dict(part.rsplit(" ", 1) for part in m["values"].split(" | "))
        assert list(values) == ["train/loss", "val/loss", "val/quadrant/accuracy", "val/red/f1", "val/tags/micro_f1"]
        for key, text in values.items():
            assert float(text) == pytest.approx(row[key], abs=1e-3), key
        assert (m["eta"] is None) == (row["epoch"] == 2)


def test_epochs_count_from_one(piped_run):
    """history.csv and the messages count epochs from 1, as the plots do."""
    run, out = piped_run
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    best = int(history.loc[history["val/loss"].idxmin(), "epoch"])  # training.monitor: val/loss, min
    assert f"restored the best checkpoint (epoch {best})" in out.splitlines()


# ---- start-up: each verb imports what it needs ------------------------------------------------------
TRAINING_ONLY = ("lightning", "mlflow", "matplotlib", "timm", "torchmetrics", "torchvision", "tensorboard")


def imported_by(*argv, cwd=None) -> set[str]:
    """Top-level packages imported by running the CLI with `argv` in a fresh interpreter."""
    code = ("import json, sys\nfrom polyhead.cli.main import main\nrc = main(sys.argv[1:])\n"
            "print(json.dumps({'rc': rc, 'modules': sorted({m.split('.')[0] for m in sys.modules})}))")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0, proc.stderr
    return set(result["modules"])


def test_print_config_imports_no_training_libraries(dataset):
    modules = imported_by("train", dataset / "config.yaml", "--print-config")
    assert "omegaconf" in modules  # the probe sees what it should
    assert not modules & {*TRAINING_ONLY, "pandas"}, sorted(modules & {*TRAINING_ONLY, "pandas"})


@pytest.mark.parametrize("source", ["--images", "--table"])
def test_predict_imports_no_training_libraries(piped_run, tmp_path, source):
    """Neither a folder nor a table (read in chunks) brings in Lightning, MLflow, matplotlib,
    TensorBoard, torchmetrics, timm or torchvision."""
    run, _ = piped_run
    folder = run.parent.parent
    given = folder / "images" if source == "--images" else folder / "labels.csv"
    modules = imported_by("predict", run, source, given, "--out", tmp_path / "p.csv", "--num-workers", "0")
    assert "torch" in modules and len(pd.read_csv(tmp_path / "p.csv")) == 40
    assert not modules & set(TRAINING_ONLY), sorted(modules & set(TRAINING_ONLY))
