"""Heatmaps of trained models with captum (PROTOCOLS.md section 7).

Methods (``spec["method"]``):

* ``lrp_epsilon``: LRP with the epsilon rule (eps 0.001) on every
  convolution and linear layer;
* ``lrp_beta``: LRP with the alpha-beta rule, alpha = 1 + beta (004 studies 1
  to 3: beta in 0, 0.25, 0.5, 0.75, 1);
* ``guided_backprop``: refused for models whose nonlinearity is not ReLU;
* ``gradient_x_input``;
* ``occlusion``: a patch of zeros slid over the input (3D patch and stride on
  volumes, 2D on mosaics), ``batch`` occluded inputs per forward pass (004
  study 3's occlusion: the drop of the disease-class score);
* ``occlusion_slice``: 000's occlusion. "We performed occlusion sensitively for
  3D and TL models using 2D window of size 6 x 5 to be removed from each input
  slice with a stride of 2. We used 2D window for occlusion to hide the same
  number of pixels for TL and 3D models." The window (``occlusion_slice_window``,
  rows x columns of a slice as the mosaics show it) covers one axial slice of a
  volume at a time, or slides over the whole mosaic of a 2D model, zeroing 30
  pixels per step. The score is the cross-entropy of each scan's true class,
  "the cross entropy response of the network given such occluded data as a
  function of the position of the occlusion box": each voxel's value is the
  mean, over the windows that hide it, of the cross-entropy of the occluded
  input minus that of the intact one (000's map less the scan's own
  cross-entropy, a constant per scan, so that 0 means no effect). Each scan is
  explained for its own class, so the class-wise group maps are 000's
  "average cross entropy using all samples belonging to each class separately";
* ``gradcam``: on a named layer (default: the last convolution block of a 3D
  network, the last dense block, i.e. 001's last concatenation, or the last
  stage of a 2D backbone), upsampled to the input (tri- or bilinear).

LRP runs captum's :class:`~captum.attr.LRP` on a fresh copy of the model in
which every BatchNorm that follows a convolution is folded into it first, and
rules are assigned to each layer here, since captum's defaults only cover
some 2D layers: the chosen rule on convolutions and linear layers, epsilon on
pooling and on BatchNorm layers that cannot be folded, and a pass-through rule (the relevance of an output goes to
its input unchanged) on reshaping layers, on activations other than ReLU and
on the grey-to-RGB input layer, and the thesis' averaging on the PIF layer's two strands
(:class:`StrandAverageRule`). Biases (and the BatchNorm shifts folded into
them) are left out of the rules' denominators, as in 004's reference code
(``heatmaps.lrp_bias: false``), so LRP conserves relevance on the sequential
networks, trained ones included (tested); with ``lrp_bias: true`` they absorb
some, as in captum's own rules. captum's LRP needs every activation to feed one
layer, so LRP is refused for the 2D backbones (DenseNet concatenations,
ResNet skip connections); the other methods apply to them.

Every heatmap but 000's occlusion is for the disease class (``target``), so patients and controls
share one scale, and every method starts from one score: the disease logit
minus the mean of the other logits (:func:`contrast_model`; with two classes the
logit difference, i.e. the log-odds of the disease's softmax probability), not
from the disease logit alone. A softmax network's logits are defined only up to
a shared offset: a negative disease logit of a scan the network calls diseased
made every LRP voxel negative, and the positive-only atlas metrics then dropped
the map. The score is positive exactly when the disease probability exceeds the
mean of the others' (two classes: 0.5). Heatmaps of 2D models on mosaics are mapped back onto the
volume (each mosaic's tiles to their slices, resized back to the tile size),
so every model's heatmaps are volumes in template space. Their group maps and figures
are in :mod:`braindl.groupmaps`, which needs no torch.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from captum.attr import LRP, GuidedBackprop, InputXGradient, LayerAttribution, LayerGradCam, Occlusion
from captum.attr._utils.lrp_rules import EpsilonRule, PropagationRule
from torch import nn

from braindl import mosaic as mosaics
from braindl.architectures import BACKBONES, HEATMAP_METHODS as METHODS, heatmap_refusal
from braindl.groupmaps import HeatmapError
from braindl.io import job_file_lists, write_json, write_nifti, write_tsv
from braindl.pack import load_pack
from braindl.templates import TEMPLATE_SPACE

#: activations guided backpropagation cannot handle (it rewrites the gradient of ReLUs only)
NON_RELU = (nn.ELU, nn.LeakyReLU, nn.PReLU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Softplus, nn.RReLU)
_GRADCAM_2D = {"densenet": "features.1.features.denseblock4", "resnet": "features.1.layer4",
               "senet": "features.1.layer4", "efficientnet": "features.1._conv_head"}


# ---- LRP ----------------------------------------------------------------------------------------
def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if not list(m.children())]


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of ``model`` (eval mode) with every BatchNorm whose input is a convolution's output folded
    into that convolution; returns (copy, number folded).

    Which BatchNorm follows which convolution is read from a forward pass of
    ``example``, not from the module order.
    """
    net = copy.deepcopy(model).eval()
    produced, feeds = {}, {}  # id -> (convolution output, its layer): the tensor is kept, so ids stay unique

    def _producer(x):
        hit = produced.get(id(x))
        return hit[1] if hit is not None and hit[0] is x else None

    hooks = []
    for name, mod in _leaves(net):
        if isinstance(mod, nn.modules.conv._ConvNd):
            hooks.append(mod.register_forward_hook(lambda m, i, o, n=name: produced.__setitem__(id(o), (o, n))))
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            hooks.append(mod.register_forward_hook(lambda m, i, o, n=name: feeds.__setitem__(n, _producer(i[0]))))
    with torch.no_grad():
        net(example)
    for h in hooks:
        h.remove()
    uses = pd.Series([c for c in feeds.values() if c is not None]).value_counts()
    folded = 0
    for bn_name, conv_name in feeds.items():
        if conv_name is None or uses[conv_name] != 1:
            continue
        conv, bn = net.get_submodule(conv_name), net.get_submodule(bn_name)
        if not bn.track_running_stats or bn.running_var is None:
            continue
        scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        with torch.no_grad():
            w = conv.weight * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
            b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight = nn.Parameter(w)
            conv.bias = nn.Parameter((b - bn.running_mean) * scale + shift)
        _set_module(net, bn_name, nn.Identity())
        folded += 1
    return net, folded


def _hook_input(rule: PropagationRule, inputs) -> torch.Tensor:
    """Register captum's input hook (relevance = input x gradient) on a layer's single input."""
    x = inputs[0]
    rule._has_single_input = True
    rule._handle_input_hooks = []
    if not hasattr(x, "hook_registered"):
        rule._handle_input_hooks.append(x.register_hook(rule._create_backward_hook_input(x.data)))
        x.hook_registered = True
    return x


def _ratio(a: torch.Tensor, x: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """``a / x``, detached, with ``eps`` added away from zero (the sign of ``x``)."""
    x = x.detach()
    return (a.detach() / (x + torch.where(x >= 0, 1.0, -1.0) * eps)).detach()


def _relevance_output(rule: PropagationRule, out: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Give ``out`` (whose gradient carries a rule's relevance) the layer's forward ``value`` and captum's
    output hook; returns the clone the next layer's hooks go on (before this one), as captum's rules do."""
    out = out + (value - out).detach()
    rule._handle_output_hook = out.register_hook(rule._create_backward_hook_output(value))
    return out.clone()


class EpsilonNoBiasRule(EpsilonRule):
    """LRP epsilon rule with the bias out of the denominator, z_j = sum_i x_i w_ij (the reference's
    convention): captum computes the layer's output for the relevance pass with the modified weights,
    so the bias is set to 0 there (the forward activations are kept), and relevance is conserved
    up to epsilon."""

    def _manipulate_weights(self, module, inputs, outputs) -> None:
        if getattr(module, "bias", None) is not None:
            module.bias.data = torch.zeros_like(module.bias.data)


class AlphaBetaRule(PropagationRule):
    """LRP alpha-beta rule (alpha = 1 + beta): positive contributions weighted by alpha, negative by beta.

    captum's rules only modify weights before the relevance pass; this rule
    instead replaces the layer's output by a tensor with the same value whose
    gradient carries the alpha-beta relevance:
    ``alpha * z+ * (z / z+) - beta * z- * (z / z-)`` with the ratios detached,
    ``z+`` and ``z-`` the sums of the positive and negative input x weight
    products, and of the bias's part when ``bias`` (by default biases are left
    out, as in the reference: relevance is then conserved exactly).
    """

    def __init__(self, beta: float, bias: bool = False) -> None:
        self.beta = float(beta)
        self.alpha = 1.0 + self.beta
        self.bias = bool(bias)

    def _manipulate_weights(self, module, inputs, outputs) -> None:
        pass

    @staticmethod
    def _apply(module, x, weight, bias):
        if isinstance(module, nn.Linear):
            return F.linear(x, weight, bias)
        return module._conv_forward(x, weight, bias)

    def forward_hook(self, module, inputs, outputs):
        x = _hook_input(self, inputs)
        w, b = module.weight, module.bias
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        bp = None if b is None or not self.bias else b.clamp(min=0)
        bn = None if b is None or not self.bias else b.clamp(max=0)
        zp = self._apply(module, xp, wp, bp) + self._apply(module, xn, wn, None)
        zn = self._apply(module, xp, wn, bn) + self._apply(module, xn, wp, None)
        z = outputs.detach()
        zp_s, zn_s = zp + self.STABILITY_FACTOR, zn - self.STABILITY_FACTOR
        out = self.alpha * zp * (z / zp_s).detach() - self.beta * zn * (z / zn_s).detach()
        return _relevance_output(self, out, z)


class PassRule(PropagationRule):
    """Relevance of an elementwise layer's output goes to its input unchanged (activations other than
    ReLU, reshaping and identity layers, the grey-to-RGB input layer): the output is replaced by ``x * (y / x)`` with the ratio
    detached, so that input x gradient equals the output relevance."""

    def _manipulate_weights(self, module, inputs, outputs) -> None:
        pass

    def forward_hook(self, module, inputs, outputs):
        x = _hook_input(self, inputs)
        if x.shape == outputs.shape:
            xb = x
        elif x.numel() == outputs.numel():  # flatten, reshape
            xb = x.reshape(outputs.shape)
        else:  # grey to RGB
            xb = x.expand_as(outputs)
        return _relevance_output(self, xb * _ratio(outputs, xb), outputs.detach())


class StrandAverageRule(PropagationRule):
    """LRP through the PIF layer's strand average (:class:`braindl.pif.StrandAverage`), the thesis' rule:
    "the relevance from the overlapping patches is simply averaged with the relevance from the
    non-overlapping patches" -- each strand gets its share of the output's relevance (1/2 and 1/2 where
    both exist), whatever its activation; the output is replaced by ``sum_k x_k * (w_k y / x_k)`` with the
    ratios detached, so that input x gradient of strand k is ``w_k`` times the output relevance."""

    def _manipulate_weights(self, module, inputs, outputs) -> None:
        pass

    def forward_hook(self, module, inputs, outputs):
        x = _hook_input(self, inputs)
        y = outputs.detach()
        out = (x * _ratio(module.weights()[None] * y[:, None], x, 1e-12)).sum(1)
        return _relevance_output(self, out, y)


_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
          nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool2d,
          nn.AdaptiveMaxPool3d, nn.modules.batchnorm._BatchNorm)
_RESHAPE = (nn.Identity, nn.Flatten, nn.Unflatten)
_PASS = NON_RELU + (nn.Sigmoid,)


def assign_lrp_rules(net: nn.Module, spec: dict) -> nn.Module:
    """Attach an LRP rule to every leaf layer of ``net`` (in place); unknown layer types are refused."""
    from braindl.backbones import GreyToRGB
    from braindl.pif import StrandAverage

    for name, mod in net.named_modules():
        if isinstance(mod, nn.ReLU):
            mod.inplace = False
        if list(mod.children()) and not isinstance(mod, GreyToRGB):
            continue
        if isinstance(mod, _WEIGHTED):
            bias = bool(spec.get("bias", False))
            if spec["method"] == "lrp_beta":
                mod.rule = AlphaBetaRule(spec["beta"], bias)
            else:
                mod.rule = EpsilonRule(spec.get("epsilon", 1e-3)) if bias else EpsilonNoBiasRule(spec.get("epsilon", 1e-3))
        elif isinstance(mod, StrandAverage):
            mod.rule = StrandAverageRule()
        elif isinstance(mod, _POOLS):
            mod.rule = EpsilonRule(1e-9)  # captum's default for pooling, whatever the rule of the weighted layers
        elif isinstance(mod, (GreyToRGB,) + _PASS + _RESHAPE):
            mod.rule = PassRule()
        elif isinstance(mod, (nn.ReLU, nn.Dropout)):
            continue  # captum passes relevance through these
        else:
            raise HeatmapError(f"LRP has no rule for layer {name or '<model>'} ({type(mod).__name__})")
    return net


# ---- the other methods --------------------------------------------------------------------------
def gradcam_layer(model: nn.Module, name: str | None = None) -> str:
    """The Grad-CAM layer: ``name`` when given (checked), else the default for the model."""
    names = dict(model.named_modules())
    if name is None:
        family = BACKBONES.get(getattr(model, "name", ""), (None,))[0]
        if family in _GRADCAM_2D:
            name = _GRADCAM_2D[family]
        else:
            convs = [n for n, m in model.features.named_children()
                     if any(isinstance(c, nn.modules.conv._ConvNd) for c in m.modules())]
            if not convs:
                raise HeatmapError(f"model {getattr(model, 'name', '?')} has no convolution block for Grad-CAM")
            name = f"features.{convs[-1]}"
    if name not in names:
        blocks = [n for n in names if n and n.count(".") <= 2]
        raise HeatmapError(f"Grad-CAM layer {name!r} is not a layer of this model; some layers: {blocks[:20]}")
    return name


def check_method(model: nn.Module, spec: dict) -> None:
    """Refuse a method that does not apply to ``model``: guided backprop without ReLUs, LRP on
    networks with skip connections or concatenations (see :func:`braindl.architectures.heatmap_refusal`)."""
    why = heatmap_refusal(getattr(model, "name", ""), spec["method"])
    if why:
        raise HeatmapError(why)
    if spec["method"] == "guided_backprop":
        other = sorted({type(m).__name__ for m in model.modules()
                        if isinstance(m, NON_RELU) or "swish" in type(m).__name__.lower()})
        if other:
            raise HeatmapError(f"guided backpropagation needs ReLU nonlinearities; model "
                               f"{getattr(model, 'name', type(model).__name__)} uses {', '.join(other)}")


class _Contrast(nn.Module):
    """``model``'s ``target`` output minus the mean of its others, as a one-output module."""

    def __init__(self, model: nn.Module, target: int, n_outputs: int):
        super().__init__()
        self.model, self.target = model, int(target)
        self.others = [i for i in range(int(n_outputs)) if i != self.target]

    def forward(self, x):
        z = self.model(x)
        return (z[:, self.target] - z[:, self.others].mean(1))[:, None]


def contrast_model(model: nn.Module, target: int, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` (eval mode) with one output: the ``target`` logit minus the mean of the other
    logits. Where the last linear layer is the output, the contrast is folded into it (``w_t -
    mean(w_others)``, ``b_t - mean(b_others)``), so that LRP's rules apply to it as to any linear layer
    (checked on ``example``); otherwise the model is wrapped (:class:`_Contrast`, not for LRP). A
    single-output model is returned as it is."""
    net = copy.deepcopy(model).eval()
    with torch.no_grad():
        logits = net(example)
    k = logits.shape[-1]
    if k < 2:
        return net
    others = [i for i in range(k) if i != int(target)]
    want = logits[:, int(target)] - logits[:, others].mean(1)
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if linears and linears[-1][1].out_features == k:
        name, last = linears[-1]
        new = nn.Linear(last.in_features, 1, bias=last.bias is not None).to(last.weight.device, last.weight.dtype)
        with torch.no_grad():
            new.weight.copy_((last.weight[int(target)] - last.weight[others].mean(0))[None])
            if last.bias is not None:
                new.bias.copy_((last.bias[int(target)] - last.bias[others].mean())[None])
        folded = copy.deepcopy(net)
        _set_module(folded, name, new)
        with torch.no_grad():
            got = folded(example)
        if got.shape[-1] == 1 and torch.allclose(got[:, 0], want, rtol=1e-4, atol=1e-5):
            return folded
    return _Contrast(net, target, k)


class _LogProb(nn.Module):
    """The log-softmax of a classifier's logits: captum's occlusion of it gives, per window, the
    cross-entropy of the occluded input minus that of the intact input (:func:`occlusion_slice_shapes`)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.log_softmax(self.net(x), dim=-1)


def occlusion_slice_shapes(window, stride, spatial: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """000's occlusion window and strides for captum (channel axis first): a 2D window of ``window``
    (rows, columns of a slice as the mosaics display it, 000: 6 x 5) stepped by ``stride`` (000: 2).

    On a volume (x, y, z in the template's RAS grid) the window covers one axial slice (z) at a time; a
    mosaic's rows run along y and its columns along x (each tile is the slice turned by 90 degrees), so the
    window is (columns, rows, 1) in x, y, z. On a mosaic it is (rows, columns)."""
    rows, cols = (int(v) for v in window)
    step = int(stride)
    if not 1 <= step <= min(rows, cols):
        raise HeatmapError(f"occlusion_slice_stride {step} must be between 1 and the window's smaller side "
                           f"({min(rows, cols)} of {rows} x {cols}), or some voxels are never hidden")
    if spatial == 3:
        return (1, cols, rows, 1), (1, step, step, 1)
    if spatial == 2:
        return (1, rows, cols), (1, step, step)
    raise HeatmapError(f"occlusion_slice needs 2D or 3D inputs, not {spatial}D")


class Attributor:
    """One method on one trained model: ``self(x, target)`` -> attributions shaped like ``x``, of the
    disease-class contrast (:func:`contrast_model`)."""

    def __init__(self, model: nn.Module, spec: dict, example: torch.Tensor, settings: dict | None = None,
                 target: int = 0):
        self.model, self.example, self.settings = model, example, settings or {}
        self.spec = dict(spec)
        check_method(model, spec)
        self.spatial = example.dim() - 2
        self.target = None
        self.folded = 0
        self._build(int(target))  # refuses a method that does not apply before any scan is read

    def _build(self, target: int) -> None:
        """The method on the contrast of ``target`` (built on the first call, and for another target)."""
        settings, spec, example = self.settings, self.spec, self.example
        method = spec["method"]
        self.target = target
        if method == "occlusion_slice":  # each scan's true class, not the disease-class contrast
            self.net = _LogProb(copy.deepcopy(self.model).eval())
            self.impl = Occlusion(self.net)
            self.window = [int(v) for v in settings["occlusion_slice_window"]]
            self.slide, self.strides = occlusion_slice_shapes(self.window, settings["occlusion_slice_stride"],
                                                              self.spatial)
            self.batch = int(settings.get("occlusion_batch", 16))
            self.spec.update(window=self.window, stride=int(settings["occlusion_slice_stride"]))
            return
        model = contrast_model(self.model, target, example)
        if method in ("lrp_epsilon", "lrp_beta"):
            if isinstance(model, _Contrast):
                raise HeatmapError(f"LRP needs a model whose output is its last linear layer; "
                                   f"{getattr(self.model, 'name', type(self.model).__name__)} has none")
            net, self.folded = fold_batchnorm(model, example)
            self.net = assign_lrp_rules(net, spec)
            self.impl = LRP(self.net)
        else:
            self.net = copy.deepcopy(model).eval()
            for m in self.net.modules():
                if isinstance(m, nn.ReLU):
                    m.inplace = False
            if method == "guided_backprop":
                self.impl = GuidedBackprop(self.net)
            elif method == "gradient_x_input":
                self.impl = InputXGradient(self.net)
            elif method == "occlusion":
                self.impl = Occlusion(self.net)
                key = "occlusion_patch" if self.spatial == 3 else "occlusion_patch_2d"
                self.patch = tuple(int(v) for v in settings[key])
                self.stride = tuple(int(v) for v in settings[key.replace("patch", "stride")])
                self.batch = int(settings.get("occlusion_batch", 16))
                if len(self.patch) != self.spatial or len(self.stride) != self.spatial:
                    raise HeatmapError(f"{key} {self.patch} and its stride must have {self.spatial} entries")
                self.spec.update(patch=list(self.patch), stride=list(self.stride))
            elif method == "gradcam":
                self.layer = gradcam_layer(self.net, settings.get("gradcam_layer"))
                self.impl = LayerGradCam(self.net, self.net.get_submodule(self.layer))
                self.spec["layer"] = self.layer
            else:
                raise HeatmapError(f"unknown heatmap method {method!r}; use one of {METHODS}")

    def __call__(self, x: torch.Tensor, target: int, truth=None) -> torch.Tensor:
        """Attributions of ``x`` for the disease class ``target``; ``truth`` (class index per input) is
        the class each input is explained for by ``occlusion_slice``, which needs it."""
        method = self.spec["method"]
        if method == "occlusion_slice":
            if truth is None or len(truth) != x.shape[0]:
                raise HeatmapError("occlusion_slice explains each scan for its true class: give one class per input")
            x = x.detach().float().clone()
            return self.impl.attribute(x, target=[int(t) for t in truth], sliding_window_shapes=self.slide,
                                       strides=self.strides, baselines=0.0,
                                       perturbations_per_eval=self.batch).detach()
        if self.target != int(target):
            self._build(int(target))
        target = 0  # the contrast network's one output
        x = x.detach().float().clone().requires_grad_(True)
        if method == "occlusion":
            out = self.impl.attribute(x, target=target, sliding_window_shapes=(1, *self.patch),
                                      strides=(1, *self.stride), baselines=0.0, perturbations_per_eval=self.batch)
        elif method == "gradcam":
            cam = self.impl.attribute(x, target=target, relu_attributions=True)
            mode = "trilinear" if self.spatial == 3 else "bilinear"
            out = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode=mode)
        else:
            if method.startswith("lrp"):  # captum removes the rules after every call
                assign_lrp_rules(self.net, self.spec)
            out = self.impl.attribute(x, target=target)
        return out.detach()


# ---- mosaics back to volumes ---------------------------------------------------------------------
def unmosaic(images: np.ndarray, volume_shape, layout: dict) -> np.ndarray:
    """Inverse of :func:`braindl.mosaic.make_mosaics` (also after :func:`~braindl.mosaic.resize`: the maps
    are resized back to the full mosaic first): (sets, H, W) maps -> a volume; slices no mosaic shows are 0."""
    volume_shape = tuple(int(v) for v in volume_shape)
    axis = int(layout["axis"])
    sets = mosaics.slice_sets(volume_shape[axis], layout)
    plane = [s for i, s in enumerate(volume_shape) if i != axis]
    th, tw = plane[1], plane[0]
    cols = int(layout["columns"])
    full = (int(layout["rows"]) * th, cols * tw)
    images = np.asarray(images, dtype=np.float32)
    if images.shape[1:] != full:
        t = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
        images = F.interpolate(t, size=full, mode="bilinear", align_corners=False)[:, 0].numpy()
    out = np.zeros(volume_shape, dtype=np.float32)
    for s, idx in enumerate(sets):
        for j, k in enumerate(idx):
            r, c = divmod(j, cols)
            tile = images[s, r * th:(r + 1) * th, c * tw:(c + 1) * tw]
            sl = [slice(None)] * 3
            sl[axis] = k
            out[tuple(sl)] = np.rot90(tile, k=-1)
    return out


# ---- one job: every test scan of one trained run ------------------------------------------------
def outcome(truth: str, predicted: str, target: str) -> str:
    """TP / FP / TN / FN with the disease class ``target`` as positive."""
    pos, said = truth == target, predicted == target
    return ("T" if pos == said else "F") + ("P" if said else "N")


def run_heatmaps(model_pt, predictions_tsv, data_npy, data_index, pack_json, spec: dict, settings: dict,
                 out_nii, out_tsv, out_json, layout: dict | None = None, threads: int | None = None,
                 log=None) -> dict:
    """Heatmaps of ``spec``'s method for every test scan of one run, for the disease class
    ``settings['target_class']``: a 4D NIfTI (one volume per scan, in the pack's template-space grid),
    its index table (participant, session, truth, prediction, outcome) and a JSON sidecar."""
    import json

    from braindl.logs import progress
    from braindl.training import load_model, pick_device

    log = log or progress
    if threads:
        torch.set_num_threads(int(threads))
    model, ck = load_model(model_pt)
    target = settings["target_class"]
    classes = list(ck["classes"])
    if target not in classes:
        raise HeatmapError(f"{model_pt}: the model's classes {classes} do not include the disease class {target!r}")
    t_idx = classes.index(target)
    preds = pd.read_csv(predictions_tsv, sep="\t", dtype={"participant_id": str, "session_id": str})
    # a run's test scans, or every scan of an external dataset (braindl.external.predict_run)
    test = preds[preds["set"].isin(["test", "external"])].reset_index(drop=True)
    if test.empty:
        raise HeatmapError(f"{predictions_tsv}: no test rows")
    arr, index = load_pack(data_npy, data_index)
    pos = {(p, s): i for i, (p, s) in enumerate(zip(index.participant_id, index.session_id))}
    missing = [f"{p}/{s}" for p, s in zip(test.participant_id, test.session_id) if (p, s) not in pos]
    if missing:
        raise HeatmapError(f"{data_index}: test scans {missing[:5]} of {predictions_tsv} are not in the data")
    meta = json.loads(Path(pack_json).read_text())
    vol_shape, affine = tuple(meta["Shape"][1:]), np.asarray(meta["Affine"])
    is_mosaic = layout is not None
    dev = pick_device(settings.get("device", "cpu"))
    model = model.to(dev)
    ex = torch.as_tensor(np.asarray(arr[pos[(test.participant_id[0], test.session_id[0])]], dtype=np.float32))
    ex = (ex[:1] if is_mosaic else ex[None]).unsqueeze(0).to(dev)
    attr = Attributor(model, spec, ex, settings, target=t_idx)
    unknown = sorted(set(test["truth"]) - set(classes))
    if spec["method"] == "occlusion_slice" and unknown:
        raise HeatmapError(f"{predictions_tsv}: true classes {unknown} are not the model's classes {classes}")
    truth_idx = [classes.index(t) if t in classes else -1 for t in test["truth"]]
    bs = int(settings.get("batch_size", 4))
    maps = np.zeros((*vol_shape, len(test)), dtype=np.float32)
    t0 = time.perf_counter()
    for start in range(0, len(test), bs):
        rows = [pos[(p, s)] for p, s in zip(test.participant_id[start:start + bs], test.session_id[start:start + bs])]
        x = torch.as_tensor(np.stack([np.asarray(arr[i], dtype=np.float32) for i in rows])).to(dev)
        truth = truth_idx[start:start + bs]
        if is_mosaic:  # every mosaic of a scan, mapped back onto the volume
            a = torch.stack([attr(x[:, s:s + 1], t_idx, truth)[:, 0] for s in range(x.shape[1])], 1).cpu().numpy()
            for j in range(a.shape[0]):
                maps[..., start + j] = unmosaic(a[j], vol_shape, layout)
        else:
            a = attr(x.unsqueeze(1), t_idx, truth)[:, 0].cpu().numpy()
            maps[..., start:start + a.shape[0]] = np.moveaxis(a, 0, -1)
        log(f"{spec['method']}: {min(start + bs, len(test))}/{len(test)} scans")
    seconds = time.perf_counter() - t0
    if not np.isfinite(maps).all():
        raise HeatmapError(f"{model_pt}: {spec['method']} produced non-finite values")
    if "predicted" not in test:
        raise HeatmapError(f"{predictions_tsv}: no 'predicted' column (a regression run has no disease class)")
    predicted = test["predicted"]
    table = test[["participant_id", "session_id", "diagnosis", "truth"]].assign(
        predicted=predicted, **{f"prob_{target}": test.get(f"prob_{target}", np.nan)},
        outcome=[outcome(t, p, target) if t in classes else "n/a" for t, p in zip(test["truth"], predicted)],
        volume=np.arange(len(test)))
    write_nifti(out_nii, maps, affine, np.float32)
    write_tsv(out_tsv, table)
    info = dict(Method=spec["method"], Parameters={k: v for k, v in attr.spec.items() if k != "method"},
                TargetClass=target, Classes=classes,
                Score=_score_text(spec["method"], target, classes), Space=TEMPLATE_SPACE, Model=str(Path(model_pt).name),
                Input="mosaic" if is_mosaic else "volume", Device=str(dev), Scans=len(test),
                Seconds=round(seconds, 3), HeatmapsPerSecond=round(len(test) / max(seconds, 1e-9), 3))
    if spec["method"].startswith("lrp"):
        info["FoldedBatchNorm"] = attr.folded
    write_json(out_json, info)
    return info


RUN_INPUTS = ("model", "predictions", "data", "index")
RUN_OUTPUTS = ("heatmaps", "index", "json")  # braindl.derivatives.heatmap_files


def run_heatmaps_of_runs(inputs: dict, outputs: dict, pack_json, spec: dict, settings: dict,
                         layout: dict | None = None, threads: int | None = None, log=None) -> list[dict]:
    """:func:`run_heatmaps` for several trained runs, one after another in one process: the runs of one
    unit and method that ``heatmaps.job_runs`` puts in one workflow job
    (:func:`braindl.planning.job_runs`), so torch, captum and MONAI are imported once for them.

    ``inputs`` maps each of :data:`RUN_INPUTS` to its files, one per run; ``outputs`` each of
    :data:`RUN_OUTPUTS`, in the same order (a single path stands for a one-run list). The lists are checked
    against each other before the first run is computed. Each run's maps equal a call of
    :func:`run_heatmaps` on it alone. Returns the sidecars, in the runs' order."""
    named = {f"{side} {key!r}": given.get(key) for side, given, keys in
             (("input", inputs, RUN_INPUTS), ("output", outputs, RUN_OUTPUTS)) for key in keys}
    lists = job_file_lists(named, "heatmaps of runs", HeatmapError).values()
    return [run_heatmaps(model, pred, data, index, pack_json, spec, settings, maps, table, sidecar, layout=layout,
                         threads=threads, log=log)
            for model, pred, data, index, maps, table, sidecar in zip(*lists)]


def _score_text(method: str, target: str, classes: list) -> str:
    if method == "occlusion_slice":
        return "cross-entropy of each scan's true class, occluded minus intact (000)"
    return f"logit of {target} minus the mean of the other logits" if len(classes) > 1 else "the output"
