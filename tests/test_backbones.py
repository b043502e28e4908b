"""2D backbones from MONAI: heads, freezing regimes, ImageNet weights in the upstream layouts."""

import re

import numpy as np
import pytest
import torch

from braindl import architectures, backbones, models


def _to_torchvision_densenet(state):
    """MONAI DenseNet keys -> the (old) torchvision file layout: denselayerN.norm.1.weight."""
    return {re.sub(r"\.layers\.(norm|relu|conv)([12])\.", r".\1.\2.", k): v for k, v in state.items()}


def _to_cadene_senet(state):
    rules = [(r"(layer\d\.\d+\.)(conv\d)\.conv\.", r"\1\2."), (r"(layer\d\.\d+\.)conv(\d)\.adn\.N\.", r"\1bn\2."),
             (r"se_layer\.fc\.0\.", "se_module.fc1."), (r"se_layer\.fc\.2\.", "se_module.fc2."),
             (r"project\.conv\.", "downsample.0."), (r"project\.adn\.N\.", "downsample.1.")]
    out = {}
    for k, v in state.items():
        for a, b in rules:
            if re.search(a, k):
                if "se_layer" in k and v.ndim == 2:
                    v = v[:, :, None, None]  # Cadene's SE blocks are 1x1 convolutions
                k = re.sub(a, b, k)
                break
        out[k] = v
    return out


def _upstream_checkpoint(name, path, convert=lambda s: s):
    """A file in the upstream layout of ``name`` with recognisable values (and an ImageNet classifier)."""
    ref = backbones.build_2d(name, 2).features[1].state_dict()
    state = {k: (torch.full_like(v, 0.25) if v.is_floating_point() else v) for k, v in ref.items()}
    state = convert(state)
    cls = {"densenet": "classifier", "resnet": "fc", "efficientnet": "_fc", "senet": "last_linear"}
    state[f"{cls[architectures.BACKBONES[name][0]]}.weight"] = torch.zeros(1000, 8)
    torch.save(state, path)
    return ref


@pytest.mark.parametrize("name, convert", [
    ("densenet121", _to_torchvision_densenet), ("resnet18", lambda s: s), ("efficientnet-b0", lambda s: s),
    ("se_resnet50", _to_cadene_senet)])
def test_upstream_weights_load_by_path(tmp_path, name, convert):
    ref = _upstream_checkpoint(name, tmp_path / "w.pth", convert)
    model = backbones.build_2d(name, 3, head="fc256")
    backbones.load_imagenet(model, name, tmp_path / "w.pth")
    loaded = model.features[1].state_dict()
    for k, v in ref.items():
        if v.is_floating_point():
            assert torch.all(loaded[k] == 0.25), k
    assert model(torch.rand(2, 1, 64, 80)).shape == (2, 3)


def test_imagenet_weights_come_from_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert architectures.hub_dir() == tmp_path / "torch" / "hub"
    assert str(architectures.hub_dir()) == torch.hub.get_dir()
    model = backbones.build_2d("resnet18", 2)
    with pytest.raises(backbones.WeightsError, match=r"resnet18-f37072fd\.pth.*not found.*torch hub cache"):
        backbones.load_imagenet(model, "resnet18", "imagenet")
    target = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    target.parent.mkdir(parents=True)
    _upstream_checkpoint("resnet18", target)
    assert backbones.load_imagenet(model, "resnet18", "imagenet") == target
    assert torch.all(model.features[1].conv1.weight == 0.25)


def test_wrong_or_unreadable_weights_are_refused_naming_the_file(tmp_path):
    _upstream_checkpoint("resnet18", tmp_path / "r18.pth")
    with pytest.raises(backbones.WeightsError, match=r"r18\.pth: does not match resnet50"):
        backbones.load_imagenet(backbones.build_2d("resnet50", 2), "resnet50", tmp_path / "r18.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(backbones.WeightsError, match=r"junk\.pth: not a readable"):
        backbones.load_imagenet(backbones.build_2d("resnet18", 2), "resnet18", tmp_path / "junk.pth")


def test_grey_input_takes_the_sum_of_the_rgb_kernels(tmp_path):
    _upstream_checkpoint("resnet18", tmp_path / "r18.pth")
    grey = backbones.build_2d("resnet18", 2, rgb=False)
    backbones.load_imagenet(grey, "resnet18", tmp_path / "r18.pth")
    assert grey.features[1].conv1.weight.shape[1] == 1
    assert torch.allclose(grey.features[1].conv1.weight, torch.full_like(grey.features[1].conv1.weight, 0.75))


def test_rgb_adapter_replicates_and_normalises():
    x = torch.rand(2, 1, 8, 8)
    y = backbones.GreyToRGB(True)(x)
    assert y.shape == (2, 3, 8, 8)
    mean, std = torch.tensor(backbones.IMAGENET_MEAN), torch.tensor(backbones.IMAGENET_STD)
    assert torch.allclose(y[:, 1], (x[:, 0] - mean[1]) / std[1])


@pytest.mark.parametrize("head, n_linear", [("linear", 1), ("fc256", 2), ("sigmoid", 1)])
def test_heads_and_freezing_regimes(head, n_linear):
    m = models.build_model("resnet18", (64, 64), 3, 0.5, head=head, head_width=32)
    assert sum(isinstance(x, torch.nn.Linear) for x in m.head) == n_linear
    assert m.output == ("sigmoid" if head == "sigmoid" else "softmax")
    total = sum(p.numel() for p in m.parameters())
    head_n = sum(p.numel() for p in m.head.parameters())
    assert models.freeze(m, "head_only") == head_n
    sixty = models.freeze(m, "first_60_percent")
    assert head_n < sixty < total
    assert not m.features[1].conv1.weight.requires_grad and all(p.requires_grad for p in m.head.parameters())
    assert models.freeze(m, "none") == total


def test_the_papers_mosaic_sizes_pass_through():
    m = models.build_model("densenet121", (570, 790), 4, 0.5).eval()
    with torch.no_grad():
        assert m(torch.rand(1, 1, 570, 790)).shape == (1, 4)
    with torch.no_grad():
        assert np.isclose(float(m(torch.rand(1, 1, 380, 380)).softmax(1).sum()), 1.0)


def test_flatten_head_matches_002s_trainable_parameters():
    """002's flatten + FC head on 80 x 80 patches, three outputs (Table II)."""
    for name, expected in (("densenet121", 12_291), ("densenet169", 19_971), ("resnet50", 55_299)):
        model = backbones.build_2d(name, 3, head="flatten", input_size=(80, 80))
        assert models.freeze(model, "head_only") == expected, name
        assert model(torch.rand(2, 1, 80, 80)).shape == (2, 3)
    with pytest.raises(ValueError, match="input size"):
        backbones.build_2d("resnet18", 3, head="flatten")


def test_models_and_backbones_share_a_module_not_a_cycle():
    """backbones builds on braindl.nets, as models does; only models imports backbones."""
    import ast
    from pathlib import Path

    def imported(name):
        tree = ast.parse((Path(__file__).resolve().parents[1] / "braindl" / f"{name}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert "braindl.models" not in imported("backbones") and "braindl.nets" in imported("backbones")
    assert {"braindl.backbones", "braindl.nets"} <= imported("models")
    from braindl import backbones, models, nets

    assert models.Net is nets.Net and isinstance(backbones.build_2d("resnet18", 2), nets.Net)
