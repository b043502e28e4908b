"""2D ImageNet-style backbones from MONAI, heads and pretrained weights (PROTOCOLS.md section 5).

A 2D model is ``nets.Net(features, head)``: ``features`` is an input
adapter (grey scale replicated to three channels and ImageNet mean/std
normalisation, when ``rgb``) followed by a MONAI backbone whose classifier is
replaced by the identity, so it returns the pooled feature vector; ``head``
is one of

* ``linear``: one fully connected layer on the pooled features;
* ``flatten``: 002's flatten + FC: the backbone's global pooling is removed
  and one fully connected layer reads the flattened feature map, so its size
  depends on the input (``input_size``; 3 outputs of DenseNet121 on 80 x 80
  patches: 1024 x 2 x 2 x 3 + 3 = 12,291 parameters, as 002's Table II);
* ``fc256``: FC ``head_width`` + BatchNorm + ReLU + dropout + FC (001);
* ``sigmoid``: one FC layer with sigmoid outputs, trained with class-weighted
  binary cross-entropy (003; usually with the backbone frozen).

Pretrained weights are read in the layout the upstream weights use
(torchvision for DenseNet and ResNet, lukemelas/EfficientNet-PyTorch for
EfficientNet, Cadene/pretrained-models for SE-ResNet/SENet) with
``weights_only`` loading, from an explicit file or from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<upstream file name>``, where
``torch.hub.load_state_dict_from_url`` would have put them). Nothing is
downloaded: a missing file is an error that names the expected path.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from braindl.architectures import BACKBONES, HEADS, weights_path  # noqa: F401 - re-exported
from braindl.nets import Net

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsError(ValueError):
    """A pretrained checkpoint that is missing or does not fit the backbone."""


class GreyToRGB(nn.Module):
    """(B, 1, H, W) in [0, 1] -> (B, 3, H, W) normalised as ImageNet images (or left grey)."""

    def __init__(self, rgb: bool = True):
        super().__init__()
        self.rgb = bool(rgb)
        c = 3 if rgb else 1
        mean = torch.tensor(IMAGENET_MEAN[:c] if rgb else (0.449,)).view(1, c, 1, 1)
        std = torch.tensor(IMAGENET_STD[:c] if rgb else (0.226,)).view(1, c, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x):
        if self.rgb:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std


def _monai_backbone(name: str, in_channels: int, pool: bool = True) -> nn.Module:
    """The MONAI network of ``name`` with its classifier replaced by the identity; without ``pool`` its
    global average pooling is removed too (the output is the flattened feature map)."""
    from monai.networks import nets

    family = BACKBONES[name][0]
    if family == "densenet":
        net = getattr(nets, name.replace("densenet", "DenseNet"))(spatial_dims=2, in_channels=in_channels,
                                                                   out_channels=1)
        net.class_layers.out = nn.Identity()
        if not pool:
            net.class_layers.pool = nn.Identity()
    elif family == "resnet":
        # torchvision's stem (7x7 stride-2 convolution, max-pool) and bias-free shortcuts
        net = getattr(nets, name)(spatial_dims=2, n_input_channels=in_channels, feed_forward=False,
                                  conv1_t_size=7, conv1_t_stride=2, bias_downsample=False)
        if not pool:
            net.avgpool = nn.Identity()
    elif family == "efficientnet":
        net = nets.EfficientNetBN(name, pretrained=False, spatial_dims=2, in_channels=in_channels, num_classes=1)
        net._fc = nn.Identity()
        if not pool:
            net._avg_pooling = nn.Identity()
    else:
        cls = {"se_resnet50": nets.SEResNet50, "se_resnet101": nets.SEResNet101, "se_resnet152": nets.SEResNet152,
               "se_resnext50_32x4d": nets.SEResNext50, "se_resnext101_32x4d": nets.SEResNext101,
               "senet154": nets.SENet154}[name]
        net = cls(spatial_dims=2, in_channels=in_channels, num_classes=1, pretrained=False)
        net.last_linear = nn.Identity()
        if not pool:
            net.adaptive_avg_pool = nn.Identity()
    return net


def feature_size(backbone: nn.Module, in_channels: int, input_size=(64, 64)) -> int:
    was = backbone.training
    backbone.eval()
    with torch.no_grad():
        n = int(backbone(torch.zeros(1, in_channels, *input_size)).flatten(1).shape[1])
    backbone.train(was)
    return n


def make_head(kind: str, n_features: int, n_outputs: int, dropout: float = 0.5, width: int = 256) -> nn.Sequential:
    if kind in ("linear", "sigmoid", "flatten"):
        return nn.Sequential(nn.Linear(n_features, n_outputs))
    if kind == "fc256":
        return nn.Sequential(nn.Linear(n_features, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout),
                             nn.Linear(width, n_outputs))
    raise ValueError(f"unknown head {kind!r}; use one of {HEADS}")


def build_2d(name: str, n_outputs: int, head: str = "fc256", dropout: float = 0.5, head_width: int = 256,
             rgb: bool = True, input_size=None):
    """A 2D backbone + head as ``nets.Net``; ``model.output`` is ``sigmoid`` or ``softmax``.

    ``input_size`` (H, W): required by the ``flatten`` head, whose size follows the feature map."""
    if name not in BACKBONES:
        raise ValueError(f"unknown 2D backbone {name!r}; known: {sorted(BACKBONES)}")
    if head == "flatten" and input_size is None:
        raise ValueError("the flatten head needs the input size")
    c = 3 if rgb else 1
    backbone = _monai_backbone(name, c, pool=head != "flatten")
    n_features = feature_size(backbone, c, tuple(input_size) if head == "flatten" else (64, 64))
    net = Net(nn.Sequential(GreyToRGB(rgb), backbone), make_head(head, n_features, n_outputs, dropout, head_width),
              name)
    net.output = "sigmoid" if head == "sigmoid" else "softmax"
    return net


# ---- pretrained weights in the upstream layouts ------------------------------------------------
_DENSE = re.compile(r"^(.*denselayer\d+)\.(norm|relu|conv)\.?([12])\.(weight|bias|running_mean|running_var|"
                    r"num_batches_tracked)$")
_SENET = [
    (re.compile(r"^(layer[1-4]\.\d+\.)(conv\d)\.(\w+)$"), r"\1\2.conv.\3"),
    (re.compile(r"^(layer[1-4]\.\d+\.)bn(\d)\.(\w+)$"), r"\1conv\2.adn.N.\3"),
    (re.compile(r"^(layer[1-4]\.\d+\.)se_module\.fc1\.(\w+)$"), r"\1se_layer.fc.0.\2"),
    (re.compile(r"^(layer[1-4]\.\d+\.)se_module\.fc2\.(\w+)$"), r"\1se_layer.fc.2.\2"),
    (re.compile(r"^(layer[1-4]\.\d+\.)downsample\.0\.(\w+)$"), r"\1project.conv.\2"),
    (re.compile(r"^(layer[1-4]\.\d+\.)downsample\.1\.(\w+)$"), r"\1project.adn.N.\2"),
]
_CLASSIFIER = {"densenet": ("classifier.",), "resnet": ("fc.",), "efficientnet": ("_fc.",),
               "senet": ("last_linear.",)}


def upstream_to_monai(name: str, state: dict) -> dict:
    """Rename an upstream ImageNet state dict to the MONAI backbone's keys (classifier dropped)."""
    family = BACKBONES[name][0]
    out = {}
    for k, v in state.items():
        if k.startswith(_CLASSIFIER[family]):
            continue
        if family == "densenet":
            m = _DENSE.match(k)
            if m:
                k = f"{m.group(1)}.layers.{m.group(2)}{m.group(3)}.{m.group(4)}"
        elif family == "senet":
            for pat, rep in _SENET:
                if pat.match(k):
                    if "se_module" in k and v.ndim == 4:
                        v = v.reshape(v.shape[0], v.shape[1])  # 1x1 convolutions -> linear layers
                    k = pat.sub(rep, k)
                    break
        out[k] = v
    return out


def load_imagenet(model, name: str, weights) -> Path:
    """Load upstream ImageNet weights into ``model.features[1]`` (the backbone); returns the file read.

    Every backbone parameter must be in the file with its shape (a grey-scale
    first convolution takes the sum of the RGB kernels); the upstream
    classifier is ignored. Errors name the file.
    """
    path = weights_path(name, weights)
    if not path.is_file():
        hint = (f" (the torch hub cache; put the upstream file {BACKBONES[name][1]} there, or give a path)"
                if str(weights) == "imagenet" else "")
        raise WeightsError(f"{path}: pretrained weights for {name} not found{hint}")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise WeightsError(f"{path}: not a readable weights_only checkpoint ({err})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict")
    state = upstream_to_monai(name, state)
    backbone = model.features[1]
    own = backbone.state_dict()
    missing, wrong = [], []
    for k, v in own.items():
        if k not in state:
            missing.append(k)
            continue
        w = state[k]
        if w.ndim == 4 and v.ndim == 4 and v.shape[1] == 1 and w.shape[1] == 3 and w.shape[0] == v.shape[0]:
            state[k] = w = w.sum(1, keepdim=True)
        if tuple(w.shape) != tuple(v.shape):
            wrong.append(f"{k} {tuple(w.shape)} != {tuple(v.shape)}")
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or wrong:
        raise WeightsError(f"{path}: does not match {name} ("
                           + "; ".join([f"missing {k}" for k in missing[:3]] + wrong[:3])
                           + (" ..." if len(missing) + len(wrong) > 6 else "") + ")")
    backbone.load_state_dict({k: state.get(k, v) for k, v in own.items()})
    return path
