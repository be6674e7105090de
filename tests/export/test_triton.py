"""`--format triton`: a model repository whose config.pbtxt parses against Triton's own
ModelConfig schema (the copy shipped in tritonclient) and names the graph's real inputs and
outputs."""

from __future__ import annotations

import json

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export_models import TASKS, make_bundle
from polyhead.errors import PolyheadError
from polyhead.export.triton import write_triton_repository
from polyhead.model.bundle import load_bundle


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton")
    bundle = load_bundle(make_bundle(root / "bundle", "small_cnn"))
    folder = write_triton_repository(bundle, root / "repo", name="shop-attrs_v1.2", max_batch_size=32)
    return root / "repo", folder


def test_layout(repository):
    repo, folder = repository
    assert folder == repo / "shop-attrs_v1.2"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "1/model.onnx", "config.pbtxt", "quadrant_labels.txt", "red_labels.txt", "tags_labels.txt"]
    assert (folder / "quadrant_labels.txt").read_text().splitlines() == ["tl", "tr", "bl", "br"]
    assert (folder / "red_labels.txt").read_text().splitlines() == ["yes"]  # the output is P(positive)
    assert (folder / "tags_labels.txt").read_text().splitlines() == ["left", "top", "warm"]


def test_config_parses_against_tritons_schema(repository):
    _, folder = repository
    config = text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())  # unknown fields raise
    assert config.name == "shop-attrs_v1.2" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 32
    assert config.HasField("dynamic_batching")
    (image,) = config.input
    assert (image.name, image.data_type, list(image.dims)) == ("images", mc.TYPE_FP32, [3, 16, 16])
    expected = {}
    for name, cfg in TASKS.items():
        k = 1 if cfg.type == "binary" else len(cfg.classes)
        expected[name] = ([k], f"{name}_labels.txt")
        expected[f"{name}_logits"] = ([k], "")
    got = {o.name: (list(o.dims), o.label_filename) for o in config.output}
    assert got == expected
    assert all(o.data_type == mc.TYPE_FP32 for o in config.output)


def test_config_matches_the_graph(repository):
    """Triton checks config against model.onnx: same names, same non-batch dims, batch axis dynamic."""
    _, folder = repository
    config = text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())
    proto = onnx.load(str(folder / "1" / "model.onnx"))

    def dims(t):
        return [d.dim_param or d.dim_value for d in t.type.tensor_type.shape.dim]

    graph = {t.name: dims(t) for t in [*proto.graph.input, *proto.graph.output]}
    declared = {t.name: ["batch", *t.dims] for t in [*config.input, *config.output]}
    assert graph == declared
    meta = json.loads(config.parameters["polyhead_metadata"].string_value)
    assert meta == {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["name"] == "shop-attrs_v1.2"


@pytest.mark.parametrize("name", ["has space", "../up", "", "-dash-first"])
def test_bad_model_name(tmp_path, repository, name):
    bundle = load_bundle(repository[0].parent / "bundle")
    with pytest.raises(PolyheadError, match="a model name may hold letters, digits"):
        write_triton_repository(bundle, tmp_path, name=name)
    assert not any(tmp_path.iterdir())
