"""braindl.heatmaps: LRP rules against their definitions, the other captum methods, mosaics back to
volumes, and one run's heatmaps, group maps and figures from a checkpoint."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import InputXGradient
from torch import nn

from braindl import atlas as A
from braindl import groupmaps as G
from braindl import heatmaps as H
from braindl import models
from braindl.architectures import heatmap_refusal, method_specs
from braindl.mosaic import make_mosaics, resize

OCCLUSION = dict(occlusion_patch=[4, 4, 4], occlusion_stride=[4, 4, 4], occlusion_batch=8)


def _contrast(net, x, target):
    """The score every method starts from: the target logit minus the mean of the others."""
    z = net(x).detach()
    others = [i for i in range(z.shape[1]) if i != target]
    return z[:, target] - z[:, others].mean(1)


def _bias_free_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 4, 3, bias=False), nn.ReLU(), nn.MaxPool3d(2), nn.Conv3d(4, 4, 3, bias=False),
                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2 * 2, 2, bias=False)).eval()


@pytest.mark.parametrize("spec", [dict(method="lrp_epsilon", epsilon=1e-9), dict(method="lrp_beta", beta=0.0),
                                  dict(method="lrp_beta", beta=1.0), dict(method="lrp_beta", beta=0.25)])
def test_lrp_conserves_relevance(spec):
    net = _bias_free_net()
    x = torch.rand(3, 1, 10, 10, 10)
    relevance = H.Attributor(net, spec, x[:1])(x, 1)
    assert relevance.shape == x.shape
    np.testing.assert_allclose(relevance.sum((1, 2, 3, 4)).numpy(), _contrast(net, x, 1).numpy(), rtol=1e-4)


def test_lrp_epsilon_to_zero_is_gradient_times_input():
    net = _bias_free_net()
    x = torch.rand(2, 1, 10, 10, 10)
    lrp = H.Attributor(net, dict(method="lrp_epsilon", epsilon=1e-9), x[:1])(x, 0)
    gxi = InputXGradient(H.contrast_model(net, 0, x[:1])).attribute(x.clone().requires_grad_(True), target=0).detach()
    np.testing.assert_allclose(lrp.numpy(), gxi.numpy(), rtol=1e-3, atol=1e-5 * float(gxi.abs().max()))
    # a large epsilon absorbs relevance: no longer gradient x input
    big = H.Attributor(net, dict(method="lrp_epsilon", epsilon=1.0), x[:1])(x, 0)
    assert not np.allclose(big.numpy(), gxi.numpy(), atol=1e-6 * float(gxi.abs().max()))


def test_alpha_beta_differs_from_epsilon_and_beta_zero_is_positive():
    net = _bias_free_net()
    x = torch.rand(2, 1, 10, 10, 10)
    r0 = H.Attributor(net, dict(method="lrp_beta", beta=0.0), x[:1])(x, 1)
    r1 = H.Attributor(net, dict(method="lrp_beta", beta=1.0), x[:1])(x, 1)
    score = _contrast(net, x, 1)
    # with a positive class score, alpha 1 beta 0 only spreads positive relevance (inputs are >= 0)
    for i in range(2):
        if score[i] > 0:
            assert float(r0[i].min()) >= -1e-7
    assert not torch.allclose(r0, r1)


def test_every_method_starts_from_the_disease_contrast_not_the_raw_logit():
    """A softmax network's logits are defined up to a shared offset: here the disease logit is negative
    although the network calls the scan diseased (p = 0.99). From the raw logit, LRP (beta 0) made every
    voxel that matters negative; from the contrast (logit difference) they are positive."""
    from captum.attr import LRP

    net = nn.Sequential(nn.Conv3d(1, 1, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(6 ** 3, 2)).eval()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[3].weight.zero_()
        net[3].weight[0, :8] = 1.0      # the disease class reads the first 8 voxels
        net[3].bias.copy_(torch.tensor([-5.0, -10.0]))
    x = torch.rand(2, 1, 6, 6, 6) * 0.5
    z = net(x).detach()
    assert (z[:, 0] < 0).all() and (z.softmax(1)[:, 0] > 0.99).all()
    raw = LRP(H.assign_lrp_rules(H.fold_batchnorm(net, x[:1])[0], dict(method="lrp_beta", beta=0.0)))
    before = raw.attribute(x.clone().requires_grad_(True), target=0).detach().reshape(2, -1)
    assert (before[:, :8] < 0).all()
    for spec in (dict(method="lrp_beta", beta=0.0), dict(method="lrp_epsilon", epsilon=1e-3),
                 dict(method="gradient_x_input")):
        after = H.Attributor(net, spec, x[:1])(x, 0).reshape(2, -1)
        assert (after[:, :8] > 0).all() and after[:, 8:].abs().max() < 1e-6, spec
    # a two-class contrast is the log-odds of the disease probability
    p = z.softmax(1)[:, 0]
    torch.testing.assert_close(H.contrast_model(net, 0, x[:1])(x)[:, 0].detach(), torch.log(p / (1 - p)), rtol=1e-4,
                               atol=1e-4)


def _trained_thesis_cnn():
    """cnn3d_thesis after a few Adam steps on random scans: biases, BatchNorm statistics and shifts
    all away from their initial values, as in a trained model."""
    torch.manual_seed(4)
    model = models.build_model("cnn3d_thesis", (36, 40, 36), 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(8, 1, 36, 40, 36)
    y = torch.tensor([0, 1] * 4)
    model.train()
    for _ in range(6):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x + 0.3 * y.view(-1, 1, 1, 1, 1).float()), y).backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("spec", [dict(method="lrp_epsilon", epsilon=1e-6), dict(method="lrp_beta", beta=0.0),
                                  dict(method="lrp_beta", beta=1.0)])
def test_lrp_conserves_relevance_on_a_trained_model_with_biases_left_out(spec):
    """The reference's convention: biases (and folded BatchNorm shifts) out of the denominators, so the
    relevance of the input sums to the score LRP starts from; with them in, they absorb a share."""
    model = _trained_thesis_cnn()
    biases = [m.bias for m in model.modules() if isinstance(m, (nn.Conv3d, nn.Linear)) and m.bias is not None]
    assert max(float(b.abs().max()) for b in biases) > 1e-2
    x = torch.rand(3, 1, 36, 40, 36)
    score = _contrast(model, x, 1)
    kept = H.Attributor(model, spec, x[:1])(x, 1).sum((1, 2, 3, 4))
    np.testing.assert_allclose(kept.numpy(), score.numpy(), rtol=2e-3, atol=1e-5)
    absorbed = H.Attributor(model, {**spec, "bias": True}, x[:1])(x, 1).sum((1, 2, 3, 4))
    assert float((absorbed - score).abs().max()) > 10 * float((kept - score).abs().max())


def _with_random_batchnorm(model):
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_batchnorm_is_folded_into_its_convolution():
    model = _with_random_batchnorm(models.build_model("cnn3d_thesis", (36, 40, 36), 2))
    x = torch.rand(2, 1, 36, 40, 36)
    folded, n = H.fold_batchnorm(model, x[:1])
    assert n == 4
    assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules())  # the original is untouched
    torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)


def test_batchnorm_not_after_a_convolution_is_kept():
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm3d(1), nn.Conv3d(1, 2, 3), nn.BatchNorm3d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 4 ** 3, 2)).eval()
    folded, n = H.fold_batchnorm(net, torch.rand(1, 1, 6, 6, 6))
    assert n == 1 and isinstance(folded[0], nn.BatchNorm3d) and isinstance(folded[2], nn.Identity)


class _OneRegion(nn.Module):
    """Scores class 1 by the mean of one corner of the volume (class 0: its negative)."""

    def forward(self, x):
        s = x[:, :, :4, :4, :4].mean((1, 2, 3, 4))
        return torch.stack([-s, s], 1)


def test_occlusion_finds_the_region_the_model_reads():
    x = torch.rand(2, 1, 12, 12, 12) + 0.5
    attr = H.Attributor(_OneRegion(), dict(method="occlusion"), x[:1], OCCLUSION)(x, 1)
    inside = attr[:, :, :4, :4, :4]
    assert float(inside.min()) > 0
    outside = attr.clone()
    outside[:, :, :4, :4, :4] = 0
    assert float(outside.abs().max()) == 0.0


def test_occlusion_batching_does_not_change_the_result():
    model = models.build_model("cnn3d_thesis", (36, 40, 36), 2).eval()
    x = torch.rand(1, 1, 36, 40, 36)
    settings = dict(occlusion_patch=[12, 12, 12], occlusion_stride=[12, 12, 12])
    one = H.Attributor(model, dict(method="occlusion"), x, {**settings, "occlusion_batch": 1})(x, 1)
    many = H.Attributor(model, dict(method="occlusion"), x, {**settings, "occlusion_batch": 16})(x, 1)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=1e-4)


class _Recorder(nn.Module):
    """Logits (0, mean of the input): records every input it is given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        s = x.flatten(1).mean(1)
        return torch.stack([torch.zeros_like(s), s], 1)


SLICE = dict(occlusion_slice_window=[6, 5], occlusion_slice_stride=2, occlusion_batch=7)


@pytest.mark.parametrize("shape", [(1, 9, 10, 3), (1, 10, 9)])  # a volume (x, y, z); a mosaic (rows, columns)
def test_slice_occlusion_hides_30_pixels_of_one_slice_per_step(shape):
    x = torch.ones(1, *shape)
    attr = H.Attributor(_Recorder(), dict(method="occlusion_slice"), x, SLICE)
    attr(x, 1, truth=[1])
    occluded = torch.cat(attr.net.net.seen[1:])[:, 0] == 0  # the first pass is captum's intact input
    per_step = occluded.flatten(1).sum(1)
    # 000: "2D window of size 6 x 5 ... from each input slice with a stride of 2"; windows fit these shapes exactly
    assert per_step.tolist() == [30] * len(per_step)
    if len(shape) == 4:  # one axial slice at a time: 5 columns along x, 6 rows along y
        hidden = occluded.nonzero()
        for k in range(len(per_step)):
            where = hidden[hidden[:, 0] == k][:, 1:]
            assert len(set(where[:, 2].tolist())) == 1
            assert (where.max(0).values - where.min(0).values + 1)[:2].tolist() == [5, 6]
        assert len(per_step) == 3 * 3 * 3  # x: (9-5)/2+1, y: (10-6)/2+1, z: 3 slices
    else:  # 6 rows x 5 columns of the mosaic
        hidden = occluded.nonzero()
        for k in range(len(per_step)):
            where = hidden[hidden[:, 0] == k][:, 1:]
            assert (where.max(0).values - where.min(0).values + 1).tolist() == [6, 5]
        assert len(per_step) == 3 * 3  # rows (10-6)/2+1, columns (9-5)/2+1


def _cross_entropy(net, x, truth):
    return -torch.log_softmax(net(x), 1)[torch.arange(len(truth)), truth]


def test_slice_occlusion_maps_the_true_class_cross_entropy_rise():
    """Each voxel: the mean over the windows that hide it of CE(occluded) - CE(intact), for the scan's own
    class (000: "the cross entropy response ... as a function of the position of the occlusion box")."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(7 * 8 * 2, 2)).eval()
    x = torch.rand(2, 1, 7, 8, 2)
    truth = [1, 0]  # an AD and a CN scan: each explained for its own class
    got = H.Attributor(net, dict(method="occlusion_slice"), x[:1], SLICE)(x, 1, truth=truth)
    want, count = torch.zeros_like(x), torch.zeros_like(x)
    base = _cross_entropy(net, x, truth)
    for z in range(2):  # windows of 5 (x) x 6 (y) x 1 (z), stride 2, cut at the far edges as captum does
        for i in range(0, 7 - 5 + 2, 2):
            for j in range(0, 8 - 6 + 2, 2):
                occ = x.clone()
                occ[:, :, i:i + 5, j:j + 6, z] = 0
                rise = _cross_entropy(net, occ, truth) - base
                want[:, :, i:i + 5, j:j + 6, z] += rise[:, None, None, None]
                count[:, :, i:i + 5, j:j + 6, z] += 1
    torch.testing.assert_close(got, want / count, atol=1e-5, rtol=1e-4)
    # another true class gives another map
    other = H.Attributor(net, dict(method="occlusion_slice"), x[:1], SLICE)(x, 1, truth=[0, 0])
    assert not torch.allclose(other[0], got[0]) and torch.allclose(other[1], got[1])
    with pytest.raises(H.HeatmapError, match="one class per input"):
        H.Attributor(net, dict(method="occlusion_slice"), x[:1], SLICE)(x, 1)
    with pytest.raises(H.HeatmapError, match="occlusion_slice_stride 6 must be between 1 and"):
        H.Attributor(net, dict(method="occlusion_slice"), x[:1], {**SLICE, "occlusion_slice_stride": 6})


def test_refusals_name_the_model_and_the_reason():
    ms = models.build_model("cnn3d_ms", (36, 40, 36), 2).eval()
    x = torch.rand(1, 1, 36, 40, 36)
    with pytest.raises(H.HeatmapError, match="cnn3d_ms uses ELU"):
        H.Attributor(ms, dict(method="guided_backprop"), x)
    assert heatmap_refusal("cnn3d_thesis", "guided_backprop") is None
    assert "skip connections" in heatmap_refusal("resnet18", "lrp_epsilon")
    assert "concatenations" in heatmap_refusal("densenet121", "lrp_beta")
    r18 = models.build_model("resnet18", (64, 64), 2, head="linear").eval()
    with pytest.raises(H.HeatmapError, match="resnet18"):
        H.Attributor(r18, dict(method="lrp_epsilon", epsilon=1e-3), torch.rand(1, 1, 64, 64))
    # LRP passes relevance through ELU: it runs on the MS model and gives finite maps
    r = H.Attributor(ms, dict(method="lrp_epsilon", epsilon=1e-3), x)(x, 1)
    assert torch.isfinite(r).all() and r.abs().sum() > 0


def test_gradcam_layer_default_and_unknown():
    model = models.build_model("cnn3d_thesis", (36, 40, 36), 2).eval()
    assert H.gradcam_layer(model) == "features.6"
    r18 = models.build_model("resnet18", (64, 64), 2, head="linear")
    assert H.gradcam_layer(r18) == "features.1.layer4"
    with pytest.raises(H.HeatmapError, match="not a layer"):
        H.gradcam_layer(model, "features.99")
    x = torch.rand(2, 1, 36, 40, 36)
    cam = H.Attributor(model, dict(method="gradcam"), x[:1], {"gradcam_layer": "features.4"})(x, 1)
    assert cam.shape == x.shape and float(cam.min()) >= 0


def test_pooled_input_gives_maps_on_the_input_grid():
    """With ``input_pool`` 2 the maps stay on the crop's grid; LRP (epsilon -> 0) through the average
    pooling shares a block's relevance in proportion to its voxels' values, as gradient x input does."""
    torch.manual_seed(0)
    model = models.build_model("cnn3d_thesis", (72, 72, 72), 2, input_pool=2).eval()
    x = torch.rand(2, 1, 72, 72, 72) + 0.1
    r = H.Attributor(model, dict(method="lrp_epsilon", epsilon=1e-9), x[:1])(x, 1)
    assert r.shape == x.shape and r.abs().sum() > 0
    ratio = (r / x).reshape(2, 36, 2, 36, 2, 36, 2)
    spread = ratio.amax(dim=(2, 4, 6)) - ratio.amin(dim=(2, 4, 6))
    assert float(spread.max()) <= 1e-4 * float(ratio.abs().max())
    assert H.gradcam_layer(model) == "features.6"
    cam = H.Attributor(model, dict(method="gradcam"), x[:1])(x, 1)
    assert cam.shape == x.shape


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_2d_methods_on_backbones(name):
    model = models.build_model(name, (64, 64), 2, head="linear").eval()
    x = torch.rand(2, 1, 64, 64)
    settings = dict(occlusion_patch_2d=[16, 16], occlusion_stride_2d=[16, 16], occlusion_batch=8)
    for method in ("guided_backprop", "gradient_x_input", "gradcam", "occlusion"):
        a = H.Attributor(model, dict(method=method), x[:1], settings)(x, 1)
        assert a.shape == x.shape and torch.isfinite(a).all(), method


def test_method_labels():
    specs = method_specs(["lrp_epsilon", "lrp_beta", "gradcam"], dict(lrp_epsilon=0.001, lrp_betas=[0, 0.25, 1]))
    assert list(specs) == ["lrpepsilon", "lrpbeta000", "lrpbeta025", "lrpbeta100", "gradcam"]
    assert specs["lrpbeta025"] == {"method": "lrp_beta", "beta": 0.25, "bias": False}
    assert method_specs(["occlusion", "occlusion_slice"], {}) == {
        "occlusion": {"method": "occlusion"}, "occlusionslice": {"method": "occlusion_slice"}}
    with pytest.raises(ValueError, match="unknown heatmap method"):
        method_specs(["saliency"], {})


LAYOUT = {"rows": 2, "columns": 3, "axis": 2, "slices": {"first": 1, "last": 10}, "interleave": 2}


def test_unmosaic_inverts_the_mosaic():
    vol = np.random.default_rng(0).random((8, 6, 12)).astype(np.float32)
    back = H.unmosaic(make_mosaics(vol, LAYOUT), vol.shape, LAYOUT)
    np.testing.assert_array_equal(back[..., 1:11], vol[..., 1:11])
    assert not back[..., 0].any() and not back[..., 11].any()
    # resized mosaics come back at tile size, each slice's tile to its slice (edges blur into neighbours)
    slices = np.broadcast_to(np.arange(12, dtype=np.float32) / 12, (40, 30, 12))
    back = H.unmosaic(resize(make_mosaics(slices, LAYOUT), 0.5), slices.shape, LAYOUT)
    np.testing.assert_allclose(back[4:-4, 4:-4, 1:11], slices[4:-4, 4:-4, 1:11], atol=1e-5)


# ---- one run's heatmaps from a checkpoint, group maps and figures ---------------------------------
SHAPE = (36, 40, 36)


@pytest.fixture()
def run_files(tmp_path):
    """A trained-run checkpoint (cnn3d_thesis, CN vs AD), its predictions and a pack of 6 scans."""
    torch.manual_seed(0)
    model = models.build_model("cnn3d_thesis", SHAPE, 2)
    ck = {"model": model.state_dict(), "model_name": "cnn3d_thesis", "arch": {}, "input": "volume",
          "input_shape": list(SHAPE), "n_outputs": 2, "classes": ["CN", "AD"], "dropout": 0.4,
          "target_mean": 0.0, "target_sd": 1.0}
    torch.save(ck, tmp_path / "model.pt")
    rng = np.random.default_rng(0)
    vols = rng.random((6, *SHAPE)).astype(np.float16)
    np.save(tmp_path / "pack.npy", vols)
    ids = [f"sub-{i:02d}" for i in range(6)]
    dx = ["CN", "AD", "CN", "AD", "CN", "AD"]
    pd.DataFrame(dict(participant_id=ids, session_id="01", diagnosis=dx)).to_csv(tmp_path / "pack.tsv", sep="\t",
                                                                                 index=False)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-36, -40, -30]
    (tmp_path / "pack.json").write_text(json.dumps(dict(Shape=[6, *SHAPE], Affine=affine.tolist())))
    test = [1, 2, 3, 4]
    pd.DataFrame(dict(participant_id=[ids[i] for i in test], session_id="01", diagnosis=[dx[i] for i in test],
                      set="test", truth=[dx[i] for i in test], predicted=["AD", "AD", "CN", "CN"],
                      prob_CN=[0.3, 0.4, 0.6, 0.7], prob_AD=[0.7, 0.6, 0.4, 0.3])).to_csv(
        tmp_path / "pred.tsv", sep="\t", index=False)
    return tmp_path, affine


def _run(d, method, **extra):
    spec = method_specs([method], dict(lrp_epsilon=1e-3, lrp_betas=[0.5]))
    label, spec = next(iter(spec.items()))
    out = {k: d / f"{label}_{k}" for k in ("heatmaps.nii.gz", "heatmaps.tsv", "heatmaps.json")}
    info = H.run_heatmaps(d / "model.pt", d / "pred.tsv", d / "pack.npy", d / "pack.tsv", d / "pack.json", spec,
                          {"target_class": "AD", "device": "cpu", "batch_size": 3, **OCCLUSION, **extra},
                          *out.values(), log=lambda line: None)
    return out, info


def test_run_heatmaps_writes_template_space_maps_with_outcomes(run_files):
    d, affine = run_files
    out, info = _run(d, "lrp_beta")
    img = nib.load(out["heatmaps.nii.gz"])
    assert img.shape == (*SHAPE, 4)
    np.testing.assert_allclose(img.affine, affine)
    table = pd.read_csv(out["heatmaps.tsv"], sep="\t")
    assert table.outcome.tolist() == ["TP", "FP", "FN", "TN"]
    assert info["Parameters"] == {"beta": 0.5, "bias": False} and info["FoldedBatchNorm"] == 4 and info["TargetClass"] == "AD"
    # the maps equal a direct attribution of the same scans
    model, _ = __import__("braindl.training", fromlist=["load_model"]).load_model(d / "model.pt")
    x = torch.as_tensor(np.load(d / "pack.npy")[[1, 2, 3, 4]].astype(np.float32))[:, None]
    direct = H.Attributor(model, {"method": "lrp_beta", "beta": 0.5}, x[:1])(x, 1)[:, 0].numpy()
    np.testing.assert_allclose(np.moveaxis(np.asarray(img.dataobj), -1, 0), direct, rtol=1e-4, atol=1e-7)


def test_heatmaps_of_several_runs_equal_each_run_alone(run_files):
    """One job computes the maps of every run of a unit (rule heatmap): each run's files equal a call of
    run_heatmaps on that run alone, in the order given; lists of unequal length are refused first."""
    d, _ = run_files
    torch.manual_seed(1)  # a second run: another model, predictions with other test scans
    other = torch.load(d / "model.pt", weights_only=False)
    other["model"] = models.build_model("cnn3d_thesis", SHAPE, 2).state_dict()
    torch.save(other, d / "model2.pt")
    pred = pd.read_csv(d / "pred.tsv", sep="\t", dtype={"session_id": str})
    pred.assign(participant_id=[f"sub-{i:02d}" for i in (0, 5, 2, 3)]).to_csv(d / "pred2.tsv", sep="\t", index=False)
    spec = {"method": "gradient_x_input"}
    settings = {"target_class": "AD", "device": "cpu", "batch_size": 3}
    inputs = {"model": [d / "model.pt", d / "model2.pt"], "predictions": [d / "pred.tsv", d / "pred2.tsv"],
              "data": [d / "pack.npy"] * 2, "index": [d / "pack.tsv"] * 2}
    outs = {k: [d / f"r{i}.{ext}" for i in (1, 2)] for k, ext in zip(H.RUN_OUTPUTS, ("nii.gz", "tsv", "json"))}
    infos = H.run_heatmaps_of_runs(inputs, outs, d / "pack.json", spec, settings, log=lambda line: None)
    assert [i["Model"] for i in infos] == ["model.pt", "model2.pt"]
    for n, (model, pred_tsv) in enumerate(zip(inputs["model"], inputs["predictions"])):
        alone = [d / f"alone{n}.{ext}" for ext in ("nii.gz", "tsv", "json")]
        H.run_heatmaps(model, pred_tsv, d / "pack.npy", d / "pack.tsv", d / "pack.json", spec, settings, *alone,
                       log=lambda line: None)
        np.testing.assert_array_equal(nib.load(outs["heatmaps"][n]).get_fdata(), nib.load(alone[0]).get_fdata())
        pd.testing.assert_frame_equal(pd.read_csv(outs["index"][n], sep="\t"), pd.read_csv(alone[1], sep="\t"))
    # the second run's table lists its own test scans
    assert pd.read_csv(outs["index"][1], sep="\t").participant_id.tolist() == ["sub-00", "sub-05", "sub-02", "sub-03"]
    # the two models' maps differ (the runs were not mixed up)
    assert not np.allclose(nib.load(outs["heatmaps"][0]).get_fdata(), nib.load(outs["heatmaps"][1]).get_fdata())
    # a one-run job may name its files as single paths (as Snakemake gives a one-file input)
    single = {k: str(d / f"one.{ext}") for k, ext in zip(H.RUN_OUTPUTS, ("nii.gz", "tsv", "json"))}
    H.run_heatmaps_of_runs({k: str(v[1]) for k, v in inputs.items()}, single, d / "pack.json", spec, settings,
                           log=lambda line: None)
    np.testing.assert_array_equal(nib.load(single["heatmaps"]).get_fdata(), nib.load(outs["heatmaps"][1]).get_fdata())
    # a run missing from one list: refused before any file is written
    short = {k: [d / f"s{i}.{ext}" for i in (1, 2)] for k, ext in zip(H.RUN_OUTPUTS, ("nii.gz", "tsv", "json"))}
    with pytest.raises(H.HeatmapError, match="differ in length"):
        H.run_heatmaps_of_runs({**inputs, "predictions": inputs["predictions"][:1]}, short, d / "pack.json", spec,
                               settings)
    with pytest.raises(H.HeatmapError, match="no input 'index' files"):
        H.run_heatmaps_of_runs({k: v for k, v in inputs.items() if k != "index"}, short, d / "pack.json", spec,
                               settings)
    assert not any(p.exists() for files in short.values() for p in files)


def test_run_heatmaps_refuses_a_target_the_model_lacks(run_files):
    d, _ = run_files
    with pytest.raises(H.HeatmapError, match="do not include the disease class 'DLB'"):
        H.run_heatmaps(d / "model.pt", d / "pred.tsv", d / "pack.npy", d / "pack.tsv", d / "pack.json",
                       {"method": "gradient_x_input"}, {"target_class": "DLB"}, d / "a.nii.gz", d / "a.tsv",
                       d / "a.json")
    assert not (d / "a.nii.gz").exists()


def test_group_maps_and_figures(run_files):
    d, _ = run_files
    out, _ = _run(d, "gradient_x_input")
    runs = [dict(split=s, run="01", heatmaps=out["heatmaps.nii.gz"], index=out["heatmaps.tsv"]) for s in ("01", "02")]
    paths = {k: d / f"g_{k}{'.tsv' if k.endswith('tsv') else '.nii.gz'}"
             for k in ("groups", "groups_tsv", "runs", "runs_tsv", "meanbrain")}
    table = G.run_group_maps(runs, "AD", "CN", d / "pack.npy", d / "pack.tsv", d / "pack.json", paths)
    assert table.group.tolist() == ["AD", "CN", "TP", "FP", "TN", "FN"]
    maps = np.asarray(nib.load(paths["groups"]).dataobj)
    heat = np.asarray(nib.load(out["heatmaps.nii.gz"]).dataobj)
    np.testing.assert_allclose(maps[..., 0], heat[..., [0, 2]].mean(-1), rtol=1e-5, atol=1e-8)  # AD: scans 1, 3
    np.testing.assert_allclose(maps[..., 3], heat[..., 1], rtol=1e-5, atol=1e-8)  # FP: the CN predicted AD
    # per run the disease-class, true-positive and true-negative means (study 3's L2 for TP and TN)
    runs_table = pd.read_csv(paths["runs_tsv"], sep="\t", dtype={"split": str})
    index = pd.read_csv(out["heatmaps.tsv"], sep="\t")
    have = [g for g in ("AD", "TP", "TN") if (index.truth == g).any() or (index.outcome == g).any()]
    assert nib.load(paths["runs"]).shape == (*SHAPE, 2 * len(have))
    runs_maps = np.asarray(nib.load(paths["runs"]).dataobj)
    for g in have:
        sel = (index.outcome == g) if g in ("TP", "TN") else (index.truth == g)
        row = runs_table[(runs_table.group == g) & (runs_table.split == "02")].iloc[0]
        assert row.n_scans == sel.sum()
        np.testing.assert_allclose(runs_maps[..., int(row.volume)], heat[..., sel.to_numpy()].mean(-1), rtol=1e-5,
                                   atol=1e-8)
    brain = np.asarray(nib.load(paths["meanbrain"]).dataobj)
    np.testing.assert_allclose(brain, np.load(d / "pack.npy")[1:5].astype(np.float32).mean(0), rtol=1e-3)
    # the figures draw the AD group map over the mean brain: read back from their images
    groups_table = pd.read_csv(paths["groups_tsv"], sep="\t")
    ad = np.asarray(nib.load(paths["groups"]).dataobj)[..., int(groups_table.set_index("group").loc["AD", "volume"])]
    idx = G.display_slices(ad.shape[2])
    shown = G.display_figure(paths["groups"], paths["groups_tsv"], paths["meanbrain"], "AD", "test", d / "d.png", 60)
    bg, hm = shown[shown.artist == "image"].image.tolist()
    lim = np.abs(ad[..., idx]).max()
    assert lim > 0 and np.nanmax(np.abs(hm)) == pytest.approx(lim, rel=1e-6)
    kept = ad[..., idx][np.abs(ad[..., idx]) >= 0.1 * lim]  # below a tenth of the peak: transparent
    assert np.isfinite(hm).sum() == kept.size and np.nansum(hm) == pytest.approx(kept.sum(), rel=1e-5)
    assert bg.sum() == pytest.approx(brain[..., idx].sum(), rel=1e-5)
    stat = G.statmap_figure(paths["groups"], paths["groups_tsv"], paths["meanbrain"], "AD", "test", d / "s.png", 60)
    cuts = [im for im in stat[stat.artist == "image"].image if np.isfinite(im).any()]
    assert len(cuts) == 6  # three orthogonal cuts, each the mean brain and the map over it
    peak = np.abs(ad).max()  # the cuts go through the map's strongest cluster (nilearn's cut coordinates)
    assert 0.5 * peak <= max(np.nanmax(np.abs(im)) for im in cuts[1::2]) <= 1.0001 * peak
    assert all(np.nanmax(im) <= brain.max() * 1.0001 for im in cuts[0::2])


def _same_plot(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Two figures' plotted values (braindl.figures.plotted) are equal: images cell by cell, the rest."""
    if len(a) != len(b) or list(a.columns) != list(b.columns):
        return False
    images = [c for c in a.columns if a[c].map(lambda v: isinstance(v, np.ndarray)).any()]
    same_images = all(np.array_equal(x, y, equal_nan=True) for c in images for x, y in zip(a[c], b[c]))
    return same_images and a.drop(columns=images).equals(b.drop(columns=images))


def test_one_job_summarises_and_draws_a_method_as_the_separate_calls(run_files):
    """atlas.run_summary (rule heatmap_summary) writes what run_group_maps and run_regions write on their
    own; atlas.method_figures (rule heatmap_figures) plots what display_figure, statmap_figure and
    regions_figure plot; a missing output is refused before any map is read or figure drawn."""
    d, _ = run_files
    out, _ = _run(d, "gradient_x_input")
    runs = [dict(split=s, run="01", heatmaps=out["heatmaps.nii.gz"], index=out["heatmaps.tsv"]) for s in ("01", "02")]
    atlas = {"name": "AAL3", "image": None, "labels": None, "merge_hemispheres": True}
    names = {k: f"{k}{'.tsv' if k.endswith(('tsv', 'regions', 'summary')) else '.nii.gz'}" for k in A.SUMMARY_OUTPUTS}
    job, alone = ({k: str(d / f"{pre}_{v}") for k, v in names.items()} for pre in ("job", "alone"))
    summary = A.run_summary(runs, "AD", "CN", atlas, d / "pack.npy", d / "pack.tsv", d / "pack.json", job,
                            convention="absolute")
    G.run_group_maps(runs, "AD", "CN", d / "pack.npy", d / "pack.tsv", d / "pack.json",
                     {k: alone[k] for k in A.SUMMARY_OUTPUTS[:5]})
    want = A.run_regions(runs, "AD", "CN", atlas, d / "pack.json", alone["regions"], alone["summary"], "absolute")
    assert summary["n_runs"].iloc[0] == 2 and (summary["convention"] == "absolute").all()
    pd.testing.assert_frame_equal(summary, want)
    for k, v in names.items():
        if v.endswith(".nii.gz"):
            np.testing.assert_array_equal(nib.load(job[k]).get_fdata(), nib.load(alone[k]).get_fdata())
        else:
            pd.testing.assert_frame_equal(pd.read_csv(job[k], sep="\t"), pd.read_csv(alone[k], sep="\t"))
    maps = (job["groups"], job["groups_tsv"], job["meanbrain"], "AD", "maps title")
    figures = {k: d / f"job_{k}.png" for k in A.METHOD_FIGURES}
    shown = A.method_figures(*maps[:3], job["summary"], "AD", 5, {"maps": "maps title", "regions": "regions title"},
                             figures, 60)
    singles = {"display": G.display_figure(*maps, d / "d.png", 60), "statmap": G.statmap_figure(*maps, d / "s.png", 60),
               "regions": A.regions_figure(job["summary"], 5, "regions title", d / "r.png", 60)}
    assert set(shown) == set(singles) and all(_same_plot(shown[k], singles[k]) for k in singles)
    assert (shown["regions"].artist == "bar").sum() > 5 and all(f.stat().st_size > 1000 for f in figures.values())
    late = {k: str(d / f"late_{v}") for k, v in names.items() if k != "summary"}
    with pytest.raises(A.AtlasError, match="heatmap summary: no output summary"):
        A.run_summary(runs, "AD", "CN", atlas, d / "pack.npy", d / "pack.tsv", d / "pack.json", late)
    assert not list(d.glob("late_*"))
    with pytest.raises(A.AtlasError, match=r"heatmap figures: outputs \['display', 'statmap'\]"):
        A.method_figures(*maps[:3], job["summary"], "AD", 5, {"maps": "m", "regions": "r"},
                         {"display": d / "x.png", "statmap": d / "y.png"})


def test_display_slices_follow_000_or_scale_to_the_crop():
    np.testing.assert_array_equal(G.display_slices(60), np.arange(5, 54))
    idx = G.display_slices(96)
    assert len(idx) == 49 and idx[0] == 8 and idx[-1] == 85 and np.all(np.diff(idx) > 0)


def test_a_run_without_a_disease_scan_is_left_out_of_the_run_maps(run_files):
    """A split whose test set holds no disease-class scan: its run is listed with volume -1 and no scans,
    the other runs' maps are written; the robustness analysis reads only the maps that exist."""
    d, _ = run_files
    out, _ = _run(d, "gradient_x_input")
    index = pd.read_csv(out["heatmaps.tsv"], sep="\t", dtype=str)
    index.assign(truth="CN").to_csv(d / "cn_only.tsv", sep="\t", index=False)
    runs = [dict(split="01", run="01", heatmaps=out["heatmaps.nii.gz"], index=out["heatmaps.tsv"]),
            dict(split="02", run="01", heatmaps=out["heatmaps.nii.gz"], index=d / "cn_only.tsv")]
    paths = {k: d / f"s_{k}{'.tsv' if k.endswith('tsv') else '.nii.gz'}"
             for k in ("groups", "groups_tsv", "runs", "runs_tsv", "meanbrain")}
    G.run_group_maps(runs, "AD", "CN", d / "pack.npy", d / "pack.tsv", d / "pack.json", paths)
    table = pd.read_csv(paths["runs_tsv"], sep="\t", dtype={"split": str})
    disease = table[table.group == "AD"]
    assert disease.volume.tolist() == [0, -1] and disease.n_scans.tolist()[1] == 0
    assert (table[table.split == "02"].volume == -1).all()  # nor its TP and TN maps
    assert nib.load(paths["runs"]).shape[-1] == (table.volume >= 0).sum()
    with pytest.raises(H.HeatmapError, match="no run has a test scan of the disease class AD"):
        G.run_group_maps(runs[1:], "AD", "CN", d / "pack.npy", d / "pack.tsv", d / "pack.json", paths)


def test_slice_occlusion_run_gives_class_wise_cross_entropy_maps(run_files, monkeypatch):
    """000: "the average cross entropy using all samples belonging to each class separately": each scan
    is explained for its true class, and the class groups (and a class the pair leaves out) average them."""
    import braindl.training

    d, _ = run_files
    torch.manual_seed(0)  # a small network: ~9,000 occluded volumes per run
    small = nn.Sequential(nn.AvgPool3d(6), nn.Flatten(), nn.Linear(6 * 6 * 6, 2)).eval()
    ck = torch.load(d / "model.pt", weights_only=True)
    monkeypatch.setattr(braindl.training, "load_model", lambda path: (small, ck))
    coarse = dict(occlusion_slice_window=[6, 5], occlusion_slice_stride=5, occlusion_batch=64)
    out, info = _run(d, "occlusion_slice", **coarse)
    assert info["Method"] == "occlusion_slice" and "true class" in info["Score"]
    assert info["Parameters"]["window"] == [6, 5] and info["Parameters"]["stride"] == 5
    heat = np.moveaxis(np.asarray(nib.load(out["heatmaps.nii.gz"]).dataobj), -1, 0)
    x = torch.as_tensor(np.load(d / "pack.npy")[[1, 2, 3, 4]].astype(np.float32))[:, None]
    truth = [1, 0, 1, 0]  # AD, CN, AD, CN of the classes [CN, AD]
    direct = H.Attributor(small, {"method": "occlusion_slice"}, x[:1], coarse)(x, 1, truth=truth)[:, 0].numpy()
    np.testing.assert_allclose(heat, direct, rtol=1e-4, atol=1e-6)
    # a third class in a test set: its own group map
    index = pd.read_csv(out["heatmaps.tsv"], sep="\t", dtype=str)
    index.loc[3, "truth"] = "MCI"
    index.to_csv(d / "three.tsv", sep="\t", index=False)
    runs = [dict(split="01", run="01", heatmaps=out["heatmaps.nii.gz"], index=d / "three.tsv")]
    paths = {k: d / f"o_{k}{'.tsv' if k.endswith('tsv') else '.nii.gz'}"
             for k in ("groups", "groups_tsv", "runs", "runs_tsv", "meanbrain")}
    table = G.run_group_maps(runs, "AD", "CN", d / "pack.npy", d / "pack.tsv", d / "pack.json", paths)
    assert table.group.tolist() == ["AD", "CN", "TP", "FP", "TN", "FN", "MCI"]
    maps = np.asarray(nib.load(paths["groups"]).dataobj)
    np.testing.assert_allclose(maps[..., 0], heat[[0, 2]].mean(0), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(maps[..., 1], heat[1], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(maps[..., 6], heat[3], rtol=1e-5, atol=1e-8)
    # a test scan of a class the model does not know is refused, naming the file
    pred = pd.read_csv(d / "pred.tsv", sep="\t", dtype={"session_id": str})
    pred.loc[0, "truth"] = "DLB"
    pred.to_csv(d / "pred.tsv", sep="\t", index=False)
    with pytest.raises(H.HeatmapError, match=r"pred.tsv: true classes \['DLB'\]"):
        _run(d, "occlusion_slice", **coarse)
