"""examples/folders_hydra at its tiny budget: a generated class-per-folder tree trained twice through the
`polyhead train` command line, once with the file's presets and once with presets and values chosen on
the command line."""

from __future__ import annotations

import json

from example_runner import run_example


def test_folders_hydra_tiny(tmp_path, capsys):
    results = run_example("folders_hydra", ["--tiny", "--out", str(tmp_path)])

    shapes = tmp_path / "shapes"
    assert sorted(p.name for p in shapes.iterdir()) == ["circle", "cross", "square", "triangle"]
    assert all(len(list((shapes / s).glob("*.png"))) == 10 for s in ("circle", "cross", "square", "triangle"))
    for name in ("file_presets", "cli_presets"):
        data = json.loads((tmp_path / "runs" / name / "data.json").read_text())
        assert sum(s["rows"] for s in data.values()) == 40  # every image of the tree, split once
        assert (tmp_path / "runs" / name / "model" / "bundle.json").is_file()

    file_run, cli_run = results["file_presets"], results["cli_presets"]
    # the file's defaults list: model/tiny_cnn.yaml and optimizer/adamw_fast.yaml beside the config,
    # the built-in scheduler preset, and the file's own head.dropout over the model preset
    assert file_run["model"]["small_cnn"]["channels"] == [16, 32]
    assert file_run["model"]["head"] == {"hidden": [], "dropout": 0.1}
    assert (file_run["optimizer"]["name"], file_run["optimizer"]["lr"]) == ("adamw", 0.01)
    assert file_run["scheduler"]["name"] == "cosine"
    # command-line presets replace whole sections (the file's head.dropout is dropped, with a note),
    # then command-line values apply on top
    assert cli_run["model"]["small_cnn"]["channels"] == [24, 48, 96]
    assert cli_run["model"]["head"] == {"hidden": [64], "dropout": 0.2}
    assert (cli_run["optimizer"]["name"], cli_run["optimizer"]["lr"], cli_run["optimizer"]["nesterov"]) == \
        ("sgd", 0.05, True)
    assert cli_run["scheduler"]["name"] == "none"
    assert "replaces the config file's 'model' section; not used: model.head" in capsys.readouterr().err
