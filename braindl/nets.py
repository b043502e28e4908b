"""What the 3D networks (:mod:`braindl.models`) and the 2D backbones (:mod:`braindl.backbones`) share:
the ``Net`` container every model of the workflow is."""

import torch
from torch import nn


class Net(nn.Module):
    """entry -> features -> flatten -> head (``entry``: the identity unless given)."""

    def __init__(self, features: nn.Sequential, head: nn.Sequential, name: str, entry: nn.Module | None = None):
        super().__init__()
        self.entry = nn.Identity() if entry is None else entry
        self.features = features
        self.head = head
        self.name = name

    def forward(self, x):
        return self.head(torch.flatten(self.features(self.entry(x)), 1))
