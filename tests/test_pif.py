"""braindl.pif: the patch individual filter layer of 004 study 5, against the thesis' definition."""

import numpy as np
import pytest
import torch
from torch import nn

from braindl import heatmaps as H
from braindl.pif import PatchIndividualFilters, StrandAverage

SHAPE, PATCH = (10, 13, 10), (5, 5, 5)  # the reference's ADNI feature maps and patches: 2 x 3 x 2 patches


def _layer(overlap=True, **kw):
    torch.manual_seed(0)
    return PatchIndividualFilters(3, 4, 3, SHAPE, PATCH, overlap=overlap, **kw).eval()


def test_shapes_and_patch_counts():
    layer = _layer()
    assert layer(torch.randn(2, 4, *SHAPE)).shape == (2, 3, *SHAPE)
    # 2 x 3 x 2 patches (the y axis padded from 13 to 15), and 1 x 2 x 1 shifted by half a patch: 14 in all,
    # each with its own 4 -> 3 filters of 3 x 3 x 3
    assert layer.grid == [2, 3, 2] and layer.grid_overlap == [1, 2, 1] and layer.n_patches == 14
    n_weights = sum(m.weight.numel() for m in layer.modules() if isinstance(m, nn.Conv3d))
    assert n_weights == 14 * 3 * 4 * 27
    flat = PatchIndividualFilters(2, 2, 5, (8, 9), (4, 3), kernel_size=3, n_convs=2)
    assert flat(torch.randn(1, 2, 8, 9)).shape == (1, 5, 8, 9)
    # an axis with one patch keeps it unshifted; shifted patches never reach into the padding
    one = PatchIndividualFilters(3, 1, 1, (10, 12, 4), (5, 6, 4))
    assert one.grid == [2, 2, 1] and one.grid_overlap == [1, 1, 1] and one._overlap_region()[2] == slice(0, 4)
    padded = PatchIndividualFilters(2, 1, 1, (13, 8), (4, 4))  # 13 -> 4 patches, 3 would reach 14
    assert padded.grid == [4, 2] and padded.grid_overlap == [2, 1]
    assert padded._overlap_region() == (slice(2, 10), slice(2, 6))
    assert padded(torch.randn(1, 1, 13, 8)).shape == (1, 1, 13, 8)
    with pytest.raises(ValueError, match="kernel_size 7 must be odd and at most"):
        PatchIndividualFilters(3, 1, 1, SHAPE, PATCH, kernel_size=7)
    with pytest.raises(ValueError, match="built for feature maps"):
        layer(torch.randn(1, 4, 10, 12, 10))


def test_split_and_reassemble_keep_the_order():
    layer = PatchIndividualFilters(3, 3, 3, (10, 15, 10), PATCH, overlap=False)
    x = torch.randn(2, 3, 10, 15, 10)
    parts = layer.split(x, layer.grid)
    assert parts.shape == (2, 12 * 3, *PATCH)
    # patch 1 of the grid (x 0, y 0, z 1) is the block x 0-5, y 0-5, z 5-10
    torch.testing.assert_close(parts[:, 3:6], x[:, :, 0:5, 0:5, 5:10])
    assert torch.equal(layer.reassemble(parts, layer.grid), x)


def test_weights_are_not_shared_across_patches():
    """A change of input in one patch leaves the other patches' outputs unchanged; the same input in two
    patches gives different outputs (each patch has its own filters)."""
    layer = _layer(overlap=False)
    x = torch.randn(1, 4, *SHAPE)
    base = layer(x)
    changed = x.clone()
    changed[:, :, 0:5, 5:10, 0:5] += 1.0  # inside patch (0, 1, 0)
    diff = (layer(changed) - base).detach().abs().amax(1)[0]
    inside = torch.zeros(SHAPE, dtype=torch.bool)
    inside[0:5, 5:10, 0:5] = True
    assert float(diff[inside].min()) > 0 and float(diff[~inside].max()) == 0.0
    same = torch.ones(1, 4, *SHAPE)
    out = layer(same)[0]
    assert not torch.allclose(out[:, 2, 2, 2], out[:, 7, 2, 2])  # patch centres of (0,0,0) and (1,0,0)
    # with the overlapping strand (patches x 2-7, y 2-7 and 7-12, z 2-7), the change also reaches the voxels
    # of the shifted patches next to it (one 3 x 3 x 3 convolution: one voxel), and nothing else
    lo = _layer()
    diff = (lo(changed) - lo(x)).detach().abs().amax(1)[0]
    near = torch.zeros(SHAPE, dtype=torch.bool)
    near[0:6, 4:11, 0:6] = True  # the change grown by one voxel ...
    shifted = torch.zeros(SHAPE, dtype=torch.bool)
    shifted[2:7, 2:12, 2:7] = True  # ... inside the shifted strand
    assert float(diff[~(inside | (near & shifted))].max()) == 0.0
    assert float(diff[5, 6, 3]) > 0  # across the first strand's border, through a shifted patch


def test_the_two_strands_are_averaged_where_both_exist():
    layer = _layer()
    x = torch.randn(1, 4, *SHAPE, requires_grad=True)
    out = layer(x)
    xp = nn.functional.pad(x, [0, 0, 0, 2, 0, 0])
    first = layer.reassemble(layer.strands[0](layer.split(xp, layer.grid)), layer.grid)[:, :, :10, :13, :10]
    region = (slice(None), slice(None), slice(2, 7), slice(2, 12), slice(2, 7))
    second = layer.reassemble(layer.strands[1](layer.split(xp[region], layer.grid_overlap)), layer.grid_overlap)
    expect = first.clone()
    expect[region] = 0.5 * (first[region] + second)
    torch.testing.assert_close(out, expect)
    # the gradient reaching each strand's output is halved inside the overlap ("averaging the gradients")
    stacked = []
    layer.average.register_forward_hook(lambda m, i, o: stacked.append(i[0]))
    out = layer(x)
    stacked[0].retain_grad()
    out.sum().backward()
    g = stacked[0].grad[0, :, 0]
    assert torch.allclose(g[0, 3, 3, 3], torch.tensor(0.5)) and torch.allclose(g[1, 3, 3, 3], torch.tensor(0.5))
    assert torch.allclose(g[0, 0, 0, 0], torch.tensor(1.0)) and torch.allclose(g[1, 0, 0, 0], torch.tensor(0.0))


class _PifNet(nn.Module):
    def __init__(self, bias=False):
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1, bias=bias), nn.ReLU(),
                                      PatchIndividualFilters(3, 4, 3, SHAPE, PATCH), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(3 * 10 * 13 * 10, 2, bias=bias)

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.parametrize("spec", [dict(method="lrp_epsilon", epsilon=1e-9), dict(method="lrp_beta", beta=0.0),
                                  dict(method="lrp_beta", beta=4.0)])
def test_lrp_through_the_pif_layer_conserves_relevance(spec):
    """The thesis' rule (relevance of the two strands averaged) conserves relevance, as the other
    networks' rules do; study 5 uses beta = 4."""
    net = _PifNet().eval()
    x = torch.rand(3, 1, *SHAPE)
    z = net(x).detach()
    relevance = H.Attributor(net, spec, x[:1])(x, 1)
    np.testing.assert_allclose(relevance.sum((1, 2, 3, 4)).numpy(), (z[:, 1] - z[:, 0]).numpy(), rtol=1e-3,
                               atol=1e-6)


def test_strand_average_splits_relevance_equally():
    """Where both strands exist each gets half of the output's relevance, whatever its activation."""
    mask = torch.zeros(4, 4, 4)
    mask[1:3, 1:3, 1:3] = 1
    avg = StrandAverage(mask)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv3d(1, 1, 1, bias=False)
            self.b = nn.Conv3d(1, 1, 1, bias=False)
            self.avg = avg
            self.flat = nn.Flatten()
            self.head = nn.Linear(64, 1, bias=False)

        def forward(self, x):
            return self.head(self.flat(self.avg(torch.stack([self.a(x), self.b(x)], 1))))

    net = Net().eval()
    with torch.no_grad():
        net.a.weight.fill_(1.0)
        net.b.weight.fill_(3.0)  # the second strand's activation is 3x the first's
        net.head.weight.fill_(1.0)
    x = torch.rand(1, 1, 4, 4, 4) + 0.5
    rel = H.Attributor(net, dict(method="lrp_epsilon", epsilon=1e-9), x)(x, 0)[0, 0]
    out = avg(torch.stack([x, 3 * x], 1))[0, 0]  # each voxel's output: 2x inside the region, x outside
    # a voxel's relevance is its output (head weights 1): both strands' halves come back to the same input
    torch.testing.assert_close(rel, out, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["pif3d_a", "pif3d_b"])
def test_study5_pif_models_conserve_relevance_and_refuse_grids_that_do_not_fit(name):
    """Models A and B with the last convolution and pooling replaced by a PIF layer (2 x 3 x 2 patches):
    study 5's LRP (alpha-beta, beta 4; and beta 0), biases out of the denominators, conserves the score.
    (Epsilon with a vanishing epsilon does not, on these ELU networks with biases: bias-free
    pre-activations near zero blow the ratios up in float32; the bias-free network above conserves it.)"""
    from braindl import models

    torch.manual_seed(0)
    model = models.build_model(name, (48, 57, 48), 2).eval()
    pif = [m for m in model.modules() if isinstance(m, PatchIndividualFilters)]
    assert len(pif) == 1 and pif[0].grid == [2, 3, 2] and pif[0].input_shape == (8, 9, 8)
    x = torch.rand(2, 1, 48, 57, 48)
    z = model(x).detach()
    for beta in (4.0, 0.0):
        rel = H.Attributor(model, dict(method="lrp_beta", beta=beta), x[:1])(x, 1).sum((1, 2, 3, 4))
        np.testing.assert_allclose(rel.numpy(), (z[:, 1] - z[:, 0]).numpy(), rtol=1e-4, atol=1e-7)
    assert "ELU" in (H.heatmap_refusal(name, "guided_backprop") or "")
    with pytest.raises(ValueError, match=r"cannot be split into a \(4, 3, 2\) grid"):
        models.build_model(name, (48, 57, 48), 2, pif_grid=[4, 3, 2])


def test_pif_settings_reach_the_model_and_its_checkpoint(tmp_path):
    """training.pif_grid and pif_filters travel in the checkpoint's architecture, so load_model rebuilds
    the same network."""
    from braindl import models, training

    settings = {"model": "pif3d_a", "input_pool": 1, "pif_grid": [2, 2, 2], "pif_filters": 5}
    arch = training.model_arch(settings)
    assert arch == {"pif_grid": [2, 2, 2], "pif_filters": 5}
    assert training.model_arch({**settings, "model": "vgg3d_a"}) == {}
    model = models.build_model("pif3d_a", (36, 40, 36), 2, 0.3, **dict(arch))
    torch.save({"model": model.state_dict(), "model_name": "pif3d_a", "arch": arch, "input_shape": [36, 40, 36],
                "n_outputs": 2, "dropout": 0.3}, tmp_path / "m.pt")
    again, _ = training.load_model(tmp_path / "m.pt")
    layer = [m for m in again.modules() if isinstance(m, PatchIndividualFilters)][0]
    assert layer.out_channels == 5 and layer.grid == [2, 2, 2]
    x = torch.rand(1, 1, 36, 40, 36)
    torch.testing.assert_close(again(x), model.eval()(x))
