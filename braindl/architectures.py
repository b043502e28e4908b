"""Names of the networks the workflow builds (no torch import: the Snakefile checks configs with it).

``MODELS_3D`` are built by :mod:`braindl.models`; ``BACKBONES`` (2D, trained
on mosaics) by :mod:`braindl.backbones`, with the upstream ImageNet weight
file each one reads from the torch hub cache.
"""

MODELS_3D = ("cnn3d_thesis", "cnn3d_ms", "vgg3d_pet", "vgg3d_a", "vgg3d_b", "pif3d_a", "pif3d_b")

#: max-pooling factors of the 3D networks' blocks (0: no pooling after that block); 004 study 5's models
#: A and B (5 convolutions) and their PIF versions (the last convolution and pooling replaced by a PIF layer)
POOLS_3D = {"cnn3d_thesis": (2, 3, 2, 3), "cnn3d_ms": (2, 2, 0, 2), "vgg3d_pet": (2, 2, 2, 2),
            "vgg3d_a": (3, 2, 0, 0, 2), "vgg3d_b": (3, 2, 0, 0, 2), "pif3d_a": (3, 2, 0, 0), "pif3d_b": (3, 2, 0, 0)}
#: convolution filters of study 5's models (its reference code's ADNI models)
FILTERS_STUDY5 = {"vgg3d_a": (8, 16, 32, 64, 36), "vgg3d_b": (64, 64, 64, 64, 36),
                  "pif3d_a": (8, 16, 32, 64), "pif3d_b": (64, 64, 64, 64)}
PIF_MODELS = ("pif3d_a", "pif3d_b")


def pooled_shape(shape, pools) -> list[int]:
    """Shape after pooling by each factor of ``pools`` in turn (floor); refuses a side below 1."""
    s = [int(v) for v in shape]
    for k in pools:
        if k:
            s = [v // k for v in s]
    if min(s) < 1:
        raise ValueError(f"input shape {tuple(int(v) for v in shape)} is too small for pooling {tuple(pools)}")
    return s


def check_3d_input(name: str, shape, input_pool: int = 1) -> None:
    """Refuse a volume ``shape`` that ``name`` (a 3D network) cannot take after ``input_pool``."""
    try:
        pooled_shape(pooled_shape(shape, (int(input_pool),)), POOLS_3D[name])
    except ValueError:
        raise ValueError(f"a {tuple(int(v) for v in shape)} volume is too small for input_pool {input_pool} and "
                         f"{name}'s pooling {POOLS_3D[name]}") from None

# name: (family, upstream file name in the torch hub cache)
BACKBONES = {
    "densenet121": ("densenet", "densenet121-a639ec97.pth"),
    "densenet169": ("densenet", "densenet169-b2777c0a.pth"),
    "densenet201": ("densenet", "densenet201-c1103571.pth"),
    "resnet18": ("resnet", "resnet18-f37072fd.pth"),
    "resnet34": ("resnet", "resnet34-b627a593.pth"),
    "resnet50": ("resnet", "resnet50-0676ba61.pth"),
    "resnet101": ("resnet", "resnet101-63fe2227.pth"),
    "resnet152": ("resnet", "resnet152-394f9c45.pth"),
    **{f"efficientnet-b{i}": ("efficientnet", f) for i, f in enumerate(
        ["efficientnet-b0-355c32eb.pth", "efficientnet-b1-f1951068.pth", "efficientnet-b2-8bb594d6.pth",
         "efficientnet-b3-5fb5a3c3.pth", "efficientnet-b4-6ed6700e.pth", "efficientnet-b5-b6417697.pth",
         "efficientnet-b6-c76e70fd.pth", "efficientnet-b7-dcc49843.pth"])},
    "se_resnet50": ("senet", "se_resnet50-ce0d4300.pth"),
    "se_resnet101": ("senet", "se_resnet101-7e38fcc6.pth"),
    "se_resnet152": ("senet", "se_resnet152-d17c99b7.pth"),
    "se_resnext50_32x4d": ("senet", "se_resnext50_32x4d-a260b3a4.pth"),
    "se_resnext101_32x4d": ("senet", "se_resnext101_32x4d-3b2fe3d8.pth"),
    "senet154": ("senet", "senet154-c7b49a05.pth"),
}
HEADS = ("linear", "fc256", "sigmoid", "flatten")


def hub_dir():
    """The torch hub directory as ``torch.hub.get_dir()`` resolves it ($TORCH_HOME/hub, else
    $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub), without importing torch."""
    import os
    from pathlib import Path

    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub"


def weights_path(name: str, weights):
    """``imagenet`` -> the torch hub cache file of backbone ``name``; otherwise ``weights`` as a path."""
    from pathlib import Path

    if str(weights) == "imagenet":
        return hub_dir() / "checkpoints" / BACKBONES[name][1]
    return Path(weights)


#: nonlinearity of each network where it is not ReLU (guided backpropagation rewrites ReLU gradients only)
NON_RELU_MODELS = {"cnn3d_ms": "ELU", **{n: "ELU" for n in FILTERS_STUDY5}, **{n: "Swish" for n, (f, _) in BACKBONES.items() if f == "efficientnet"}}


def heatmap_refusal(model: str, method: str) -> str | None:
    """Why heatmap ``method`` cannot be applied to network ``model`` (None when it can)."""
    if method == "guided_backprop" and model in NON_RELU_MODELS:
        return (f"guided backpropagation needs ReLU nonlinearities; model {model} uses "
                f"{NON_RELU_MODELS[model]}")
    if method.startswith("lrp") and model in BACKBONES:
        return (f"LRP (captum) needs a network in which every activation feeds one layer; {model}'s "
                f"{'concatenations' if BACKBONES[model][0] == 'densenet' else 'skip connections'} reuse them "
                "(use gradient_x_input, guided_backprop, occlusion or gradcam for 2D backbones)")
    return None


HEATMAP_METHODS = ("lrp_epsilon", "lrp_beta", "guided_backprop", "gradient_x_input", "occlusion", "gradcam",
                   "occlusion_slice")
#: how the atlas metrics read each method's map: LRP and Grad-CAM by their positive part (the evidence for
#: the disease class), the signed methods by absolute value, as 004 does ("the absolute value of the GB
#: gradients", study 1; "sum as the sum of absolute values in each region", study 3). 000's per-slice occlusion
#: by its positive part: the rise of the cross-entropy when a region is hidden ("when ignoring a relevant region
#: for the correct classification, the cross entropy response will be high")
ATLAS_CONVENTION = {"lrp_epsilon": "positive", "lrp_beta": "positive", "gradcam": "positive",
                    "guided_backprop": "absolute", "gradient_x_input": "absolute", "occlusion": "absolute",
                    "occlusion_slice": "positive"}


def method_specs(methods: list[str], settings: dict) -> dict[str, dict]:
    """Label (the ``method-`` entity of file names) -> method spec, one per heatmap job.

    ``lrp_beta`` expands to one method per ``settings['lrp_betas']`` entry
    (``lrpbeta025`` is beta 0.25).
    """
    out = {}
    for m in methods:
        if m not in HEATMAP_METHODS:
            raise ValueError(f"unknown heatmap method {m!r}; use one of {HEATMAP_METHODS}")
        bias = bool(settings.get("lrp_bias", False))
        if m == "lrp_beta":
            for b in settings["lrp_betas"]:
                out[f"lrpbeta{int(round(float(b) * 100)):03d}"] = {"method": m, "beta": float(b), "bias": bias}
        elif m == "lrp_epsilon":
            out["lrpepsilon"] = {"method": m, "epsilon": float(settings["lrp_epsilon"]), "bias": bias}
        else:
            out[m.replace("_", "")] = {"method": m}
    return out
