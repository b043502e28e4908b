"""Patch individual filter (PIF) layer (004 study 5; Eitel et al., 2021).

"PIF layers do not perform weight sharing across the entire input but learn
individual filters for each location in the data." A PIF layer has three
stages: "Each output feature map of the previous layer is first split (i) into
patches of size (sx x sy). Next, the patches pij ... of all feature maps are
processed (ii) with a series of local convolutions of kernel size (kx x ky)
... weights are shared within each patch pij but not across patches. Lastly,
all patches are reassembled (iii) in the same order as they were split."

Against the artificial borders the split creates, "we perform a parallel
strain of network in which the patches are split with an overlap to the
original split. Each original patch location (xo, yo) is shifted by half its
patch size ... neglecting additional patches at the image borders that would
require padding ... We train all patches by averaging the gradients between the
overlapping and non-overlapping patches during the backward pass", and for LRP
"the relevance from the overlapping patches is simply averaged with the
relevance from the non-overlapping patches".

Here (:class:`PatchIndividualFilters`, MONAI-style ``spatial_dims``):

* the feature maps are zero-padded at their far ends to whole patches; each
  patch has its own convolution(s) (a grouped convolution, one group per patch,
  zero padding at the patch's own borders, so nothing crosses a patch border);
  the outputs are put back where their patches were, and the padding cut off:
  the output has the input's spatial size;
* the overlapping strand has its own convolutions on the patches shifted by half
  a patch along each axis that has more than one patch (``g - 1`` of them, fewer
  where the last would reach into the padding); an axis with one patch keeps it
  unshifted. Where the strand exists, the layer's output is the mean of the two strands
  (:class:`StrandAverage`), so each strand gets half of the gradient, and LRP
  gives each strand half of the relevance (the thesis' averaging; the rule is
  ``braindl.heatmaps.StrandAverageRule``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class StrandAverage(nn.Module):
    """Mean of the two strands where the overlapping one exists: input ``(B, 2, C, *spatial)`` (the
    non-overlapping map, then the overlapping map, zero outside its region), ``mask`` the region."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.float(), persistent=False)

    def weights(self) -> torch.Tensor:
        """Share of each strand in each output voxel, ``(2, 1, *spatial)``: 1/2 and 1/2 inside the
        overlapping region, 1 and 0 outside."""
        return torch.stack([1.0 - 0.5 * self.mask, 0.5 * self.mask])[:, None]

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        return (stacked * self.weights()[None]).sum(1)


def _grid(shape, patch) -> list[int]:
    return [math.ceil(int(n) / int(p)) for n, p in zip(shape, patch)]


class PatchIndividualFilters(nn.Module):
    """A PIF layer for feature maps of ``input_shape`` (spatial, without channels).

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: feature maps in and out.
        input_shape: spatial shape of the incoming feature maps (the patch grid is built for it).
        patch_shape: patch size per axis (``sx x sy x sz``).
        kernel_size: of the local convolutions (odd; zero-padded at the patch borders).
        n_convs: local convolutions per patch, ELU between them ("a series of local convolutions").
        overlap: add the strand shifted by half a patch, averaged with the first where it exists.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, input_shape, patch_shape,
                 kernel_size: int = 3, n_convs: int = 1, overlap: bool = True):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims = int(spatial_dims)
        self.input_shape = tuple(int(v) for v in input_shape)
        self.patch = tuple(int(v) for v in patch_shape)
        if len(self.input_shape) != spatial_dims or len(self.patch) != spatial_dims:
            raise ValueError(f"input_shape {self.input_shape} and patch_shape {self.patch} need {spatial_dims} axes")
        if int(kernel_size) % 2 == 0 or int(kernel_size) > min(self.patch):
            raise ValueError(f"kernel_size {kernel_size} must be odd and at most the patch's smallest side")
        if any(p > n for p, n in zip(self.patch, self.input_shape)):
            raise ValueError(f"patch_shape {self.patch} is larger than the feature maps {self.input_shape}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.grid = _grid(self.input_shape, self.patch)
        # per axis: the patches shifted by half a patch that stay inside the feature maps (an axis with one
        # patch: that patch, unshifted); no overlapping strand when no axis is shifted
        self.shift = [p // 2 if g > 1 else 0 for g, p in zip(self.grid, self.patch)]
        counts = [min(g - 1, (n - p // 2) // p) if g > 1 else 1
                  for g, p, n in zip(self.grid, self.patch, self.input_shape)]
        shifted = overlap and any(g > 1 for g in self.grid) and min(counts) > 0
        self.grid_overlap = counts if shifted else None
        self.strands = nn.ModuleList([self._strand(math.prod(self.grid), int(kernel_size), int(n_convs))])
        if self.grid_overlap is not None:
            self.strands.append(self._strand(math.prod(self.grid_overlap), int(kernel_size), int(n_convs)))
            padded = [g * p for g, p in zip(self.grid, self.patch)]
            mask = torch.zeros(padded)
            mask[self._overlap_region()] = 1
            self.average = StrandAverage(mask[tuple(slice(0, n) for n in self.input_shape)])

    def _strand(self, n_patches: int, k: int, n_convs: int) -> nn.Sequential:
        conv = (nn.Conv2d, nn.Conv3d)[self.spatial_dims - 2]
        layers = []
        c = self.in_channels
        for i in range(n_convs):
            if i:
                layers.append(nn.ELU())
            layers.append(conv(n_patches * c, n_patches * self.out_channels, k, padding=k // 2, groups=n_patches))
            c = self.out_channels
        return nn.Sequential(*layers)

    def _overlap_region(self) -> tuple[slice, ...]:
        return tuple(slice(s, s + g * p) for s, p, g in zip(self.shift, self.patch, self.grid_overlap))

    @property
    def n_patches(self) -> int:
        """Patches with their own filters: both strands."""
        return math.prod(self.grid) + (math.prod(self.grid_overlap) if self.grid_overlap is not None else 0)

    def split(self, x: torch.Tensor, grid) -> torch.Tensor:
        """``(B, C, g1 p1, g2 p2, ...)`` -> ``(B, P C, p1, p2, ...)``, patches in C order of the grid."""
        b, c = x.shape[:2]
        d = self.spatial_dims
        shape = [b, c]
        for g, p in zip(grid, self.patch):
            shape += [g, p]
        x = x.reshape(shape)
        grid_axes = [2 + 2 * i for i in range(d)]
        patch_axes = [3 + 2 * i for i in range(d)]
        x = x.permute(0, *grid_axes, 1, *patch_axes)
        return x.reshape(b, math.prod(grid) * c, *self.patch)

    def reassemble(self, y: torch.Tensor, grid) -> torch.Tensor:
        """Inverse of :meth:`split` for ``out_channels``: patches back where they were split from."""
        b = y.shape[0]
        d = self.spatial_dims
        o = self.out_channels
        y = y.reshape(b, *grid, o, *self.patch)
        order = [0, d + 1]
        for i in range(d):
            order += [1 + i, d + 2 + i]
        y = y.permute(*order)
        return y.reshape(b, o, *[g * p for g, p in zip(grid, self.patch)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(f"PIF layer built for feature maps {self.input_shape}, got {tuple(x.shape[2:])}")
        padded = [g * p for g, p in zip(self.grid, self.patch)]
        pad = []
        for n, m in reversed(list(zip(self.input_shape, padded))):
            pad += [0, m - n]
        xp = F.pad(x, pad)
        keep = (slice(None), slice(None)) + tuple(slice(0, n) for n in self.input_shape)
        out = self.reassemble(self.strands[0](self.split(xp, self.grid)), self.grid)
        if self.grid_overlap is None:
            return out[keep]
        region = (slice(None), slice(None)) + self._overlap_region()
        inner = self.reassemble(self.strands[1](self.split(xp[region], self.grid_overlap)), self.grid_overlap)
        shifted = torch.zeros_like(out)
        shifted[region] = inner
        return self.average(torch.stack([out[keep], shifted[keep]], 1))
