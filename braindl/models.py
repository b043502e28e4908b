"""Networks of the papers, built from MONAI blocks (``spatial_dims`` 3 or 2).

* ``cnn3d_thesis`` (004 studies 1, 3, 4): 4 blocks Conv 3x3x3 (8, 16, 32, 64)
  + BatchNorm + ReLU + MaxPool (2, 3, 2, 3); dropout 0.4; FC 128; dropout;
  FC n_outputs.
* ``cnn3d_ms`` (004 study 2): 4 Conv 3x3x3 with 64 filters + ELU, max-pool
  after the 1st, 2nd and 4th, dropout 0.3 after each pool; linear output.
* ``vgg3d_pet`` (000): VGG-like, 4 conv layers 3x3x3 (16, 32, 64, 128) with
  BatchNorm + ReLU, max-pool 2 after each, dropout 0.5, FC 64, FC n_outputs.
  000 does not give the filter counts; these are the usual VGG doubling.
* ``vgg3d_a``, ``vgg3d_b`` (004 study 5's models A and B, "a shallow
  VGG-inspired CNN which contains only convolutional, max pooling, and
  fully-connected layers"; filters as in its reference code: A 8, 16, 32, 64,
  36; B 64, 64, 64, 64, 36): Conv 3x3x3 + ELU, max-pool 3 after the 1st, 2 after
  the 2nd and the 5th, dropout 0.3 after each pool, FC 80, ELU, FC n_outputs.
* ``pif3d_a``, ``pif3d_b``: the same "with the last convolutional and pooling
  layer replaced by a PIF layer" (:class:`braindl.pif.PatchIndividualFilters`;
  ``pif_grid`` patches per axis, 2 x 3 x 2 as the reference's ADNI models;
  ``pif_filters`` filters per patch, 3), ELU, FC 100, ELU, FC n_outputs.

Every model ends in logits (``n_outputs`` classes, or 1 for regression); the
loss adds the softmax. ``model.features`` is the convolutional part and
``model.head`` the classifier, which the freezing regimes and Grad-CAM use.
``model.entry`` runs before the features: the identity, or (3D networks with
``input_pool`` k > 1) an average pooling by k, so that a 2 mm crop trains at
4 mm while inputs, checkpoints' input shapes and heatmaps stay on the crop's grid.

Convolutions pad their input ("same", MONAI's ``Convolution`` default), where 004's reference code
uses unpadded ("valid") ones: with padding, the feature-map sizes depend on the pooling alone
(:func:`braindl.architectures.pooled_shape`), so any crop box can be checked before training, and the
voxels at the crop's border stay in every block's field of view.
"""

from __future__ import annotations

import functools
import math

import torch
from monai.networks.blocks import Convolution
from torch import nn

from braindl.architectures import (BACKBONES, FILTERS_STUDY5, MODELS_3D, PIF_MODELS, POOLS_3D, check_3d_input,
                                   pooled_shape)
from braindl.backbones import build_2d
from braindl.nets import Net  # noqa: F401 - the container of every model, also models.Net

MODELS = MODELS_3D


def _pool(dims, k):
    return (nn.MaxPool3d if dims == 3 else nn.MaxPool2d)(k)


def _drop(dims, p):
    return nn.Dropout(p)


def cnn3d_thesis(input_shape, n_outputs, dropout=0.4, spatial_dims=3, filters=(8, 16, 32, 64),
                 pools=POOLS_3D["cnn3d_thesis"], fc=128) -> Net:
    layers, c = [], 1
    for f, k in zip(filters, pools):
        layers += [Convolution(spatial_dims, c, f, kernel_size=3, act="RELU", norm="BATCH"), _pool(spatial_dims, k)]
        c = f
    n_flat = c * math.prod(pooled_shape(input_shape, pools))
    head = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_flat, fc), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(fc, n_outputs))
    return Net(nn.Sequential(*layers), head, "cnn3d_thesis")


def cnn3d_ms(input_shape, n_outputs, dropout=0.3, spatial_dims=3, filters=64, pools=POOLS_3D["cnn3d_ms"]) -> Net:
    layers, c = [], 1
    for k in pools:
        layers.append(Convolution(spatial_dims, c, filters, kernel_size=3, act="ELU", norm=None))
        if k:
            layers += [_pool(spatial_dims, k), _drop(spatial_dims, dropout)]
        c = filters
    n_flat = c * math.prod(pooled_shape(input_shape, pools))
    return Net(nn.Sequential(*layers), nn.Sequential(nn.Linear(n_flat, n_outputs)), "cnn3d_ms")


def vgg3d_pet(input_shape, n_outputs, dropout=0.5, spatial_dims=3, filters=(16, 32, 64, 128), fc=64) -> Net:
    layers, c = [], 1
    pools = (2,) * len(filters)
    for f in filters:
        layers += [Convolution(spatial_dims, c, f, kernel_size=3, act="RELU", norm="BATCH"), _pool(spatial_dims, 2)]
        c = f
    n_flat = c * math.prod(pooled_shape(input_shape, pools))
    head = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_flat, fc), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(fc, n_outputs))
    return Net(nn.Sequential(*layers), head, "vgg3d_pet")


def _study5(name: str, input_shape, n_outputs, dropout=0.3, spatial_dims=3, pif_grid=(2, 3, 2),
             pif_filters: int = 3) -> Net:
    """004 study 5's models A and B (``vgg3d_*``) and their PIF versions (``pif3d_*``)."""
    layers, c = [], 1
    pools = POOLS_3D[name]
    for f, k in zip(FILTERS_STUDY5[name], pools):
        layers.append(Convolution(spatial_dims, c, f, kernel_size=3, act="ELU", norm=None))
        if k:
            layers += [_pool(spatial_dims, k), _drop(spatial_dims, dropout)]
        c = f
    shape = pooled_shape(input_shape, pools)
    fc = 80
    if name in PIF_MODELS:
        from braindl.pif import PatchIndividualFilters

        grid = [int(g) for g in pif_grid]
        if len(grid) != spatial_dims or any(g < 1 for g in grid):
            raise ValueError(f"pif_grid {list(pif_grid)} needs {spatial_dims} positive entries")
        patch = [math.ceil(s / g) for s, g in zip(shape, grid)]
        if min(patch) < 3 or any(math.ceil(s / p) != g for s, p, g in zip(shape, patch, grid)):
            raise ValueError(f"{name}: feature maps {tuple(shape)} cannot be split into a {tuple(grid)} grid of "
                             "patches of at least 3 voxels; use a larger input or a coarser pif_grid")
        layers += [PatchIndividualFilters(spatial_dims, c, int(pif_filters), shape, patch), nn.ELU()]
        c, fc = int(pif_filters), 100
    head = nn.Sequential(nn.Linear(c * math.prod(shape), fc), nn.ELU(), nn.Linear(fc, n_outputs))
    return Net(nn.Sequential(*layers), head, name)


def is_2d(name: str) -> bool:
    """Whether ``name`` is a 2D backbone (trained on mosaics) rather than a 3D network."""
    return name in BACKBONES


def build_model(name: str, input_shape, n_outputs: int, dropout: float | None = None, spatial_dims: int = 3,
                input_pool: int = 1, **arch) -> Net:
    """A model by name for inputs of ``input_shape`` (without channel).

    3D networks of this module, or the 2D backbones of :mod:`braindl.backbones`
    (``arch``: ``head``, ``head_width``, ``rgb``). ``input_pool`` k > 1 (3D
    networks only) average-pools the input by k before the first convolution.
    """
    input_pool = int(input_pool)
    if input_pool < 1:
        raise ValueError(f"input_pool must be a positive integer, got {input_pool}")
    builders = {"cnn3d_thesis": cnn3d_thesis, "cnn3d_ms": cnn3d_ms, "vgg3d_pet": vgg3d_pet,
                **{n: functools.partial(_study5, n) for n in FILTERS_STUDY5}}
    kwargs = {} if dropout is None else {"dropout": dropout}
    if name in PIF_MODELS:
        kwargs.update({k: arch.pop(k) for k in ("pif_grid", "pif_filters") if k in arch})
    if is_2d(name):
        if input_pool != 1:
            raise ValueError(f"input_pool applies to 3D networks; {name} is a 2D backbone (scale mosaics instead)")
        return build_2d(name, int(n_outputs), **kwargs, **arch)
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; known: {sorted(builders) + sorted(BACKBONES)}")
    if input_pool != 1:
        check_3d_input(name, input_shape, input_pool)
    shape = pooled_shape(input_shape, (input_pool,))
    net = builders[name](tuple(shape), int(n_outputs), spatial_dims=spatial_dims, **kwargs)
    if input_pool > 1:
        net.entry = (nn.AvgPool3d if spatial_dims == 3 else nn.AvgPool2d)(input_pool)
    net.output = "softmax"
    return net


def parameter_layers(model: nn.Module) -> list[nn.Module]:
    """Modules that own parameters directly, in forward order (convolutions, norms, linears)."""
    return [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]


def freeze(model: nn.Module, regime: str) -> int:
    """Apply a freezing regime; returns the number of trainable parameters.

    ``none``: everything trains; ``head_only``: only ``model.head`` trains;
    ``first_60_percent``: the first 60 % of parameter-owning layers are frozen.
    """
    for p in model.parameters():
        p.requires_grad_(True)
    if regime == "head_only":
        for p in model.features.parameters():
            p.requires_grad_(False)
    elif regime == "first_60_percent":
        layers = parameter_layers(model)
        for m in layers[: int(math.floor(0.6 * len(layers)))]:
            for p in m.parameters(recurse=False):
                p.requires_grad_(False)
    elif regime != "none":
        raise ValueError(f"unknown freezing regime {regime!r}; use none, head_only or first_60_percent")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_pretrained(model: nn.Module, path, strict_features: bool = True) -> list[str]:
    """Load a checkpoint (``weights_only``) into ``model``; heads whose shape differs are left fresh.

    Returns the names of parameters that kept their initial values. A missing
    file or a checkpoint whose feature layers do not match raises an error
    naming the file.
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained checkpoint not found")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    own = model.state_dict()
    kept, fresh = {}, []
    for k, v in own.items():
        if k in state and tuple(state[k].shape) == tuple(v.shape):
            kept[k] = state[k]
        else:
            fresh.append(k)
    bad = [k for k in fresh if k.startswith("features.")]
    if strict_features and bad:
        raise ValueError(f"{path}: does not match the model's feature layers ({', '.join(bad[:5])} ...)")
    model.load_state_dict({**own, **kept})
    return fresh
