"""The command line: user mistakes end in one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
