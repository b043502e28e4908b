"""Heads that ``braindl.synthetic`` did not make: an independent test generator.

Each head is the bundled MNI152 template seen through a random affine pose,
voxel size and storage orientation, wrapped in a skull and scalp built here from
distance shells (not the synthetic generator's modulated layers), with a linear
bias gradient and Gaussian noise, and **no nonlinear deformation**: the truth is
the pose alone. Used to check that extraction and registration hold on scans
whose assumptions differ from the project's own generator.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from braindl import templates

# (outer distance from the brain in mm, T1 intensity relative to white matter)
SHELLS = ((2.5, 0.12), (7.0, 0.04), (10.0, 0.85), (13.0, 0.45))
PAD = 16


def _rotation(rng, max_deg: float) -> np.ndarray:
    a = np.deg2rad(rng.uniform(-max_deg, max_deg, 3))
    cx, cy, cz, sx, sy, sz = *np.cos(a), *np.sin(a)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def head_model():
    """Template-space head (1 mm, padded): T1 image, brain mask, affine."""
    tpl = templates.load_template(1.0)
    brain = np.pad(tpl.brain_mask > 0, PAD)
    t1 = np.pad(tpl.t1, PAD)
    affine = tpl.affine.copy()
    affine[:3, 3] -= PAD * np.diag(affine)[:3]
    dist = ndimage.distance_transform_edt(~brain)
    head = t1.copy()
    inner = 0.0
    for outer, value in SHELLS:
        head[(dist > inner) & (dist <= outer)] = value
        inner = outer
    head = ndimage.gaussian_filter(head, 0.7)
    return head.astype(np.float32), brain, affine


def posed_head(out_dir, name: str, seed: int, model=None, rotation_deg: float = 20.0, translation_mm: float = 20.0,
               scale: float = 0.08, noise: float = 0.02, bias: float = 0.15, voxel_mm=None) -> dict:
    """Write one posed head (``<name>_T1w.nii.gz``) and its true brain mask; returns paths and the pose
    (template world -> native world, 4x4). ``voxel_mm``: the voxel size (default: a random one about 1 mm)."""
    rng = np.random.default_rng(seed)
    head, brain, tpl_affine = model if model is not None else head_model()
    pose = np.eye(4)
    pose[:3, :3] = _rotation(rng, rotation_deg) @ np.diag(1 + rng.uniform(-scale, scale, 3))
    pose[:3, 3] = rng.uniform(-translation_mm, translation_mm, 3)
    voxel = rng.uniform(0.9, 1.4, 3) if rng.random() < 0.5 else np.full(3, rng.uniform(0.9, 1.3))
    if voxel_mm is not None:
        voxel = np.full(3, float(voxel_mm))
    perm = rng.permutation(3)
    flips = rng.choice([-1.0, 1.0], 3)
    axes = np.eye(3)[:, perm] * flips * voxel[perm]
    # the field of view: the posed head's bounding box, 10 mm margin
    idx = np.argwhere(head > 0.02)
    corners = tpl_affine[:3, :3] @ np.array([idx.min(0), idx.max(0)]).T + tpl_affine[:3, 3:4]
    box = np.array(np.meshgrid(*corners, indexing="ij")).reshape(3, -1)
    world = pose[:3, :3] @ box + pose[:3, 3:4]
    vox_of_world = np.linalg.inv(axes)
    v = vox_of_world @ world
    lo, hi = v.min(1) - 10 / voxel[perm], v.max(1) + 10 / voxel[perm]
    shape = tuple(int(np.ceil(h - lo_)) for lo_, h in zip(lo, hi))
    affine = np.eye(4)
    affine[:3, :3] = axes
    affine[:3, 3] = axes @ lo
    # native voxel -> template voxel
    m = np.linalg.inv(tpl_affine) @ np.linalg.inv(pose) @ affine
    data = ndimage.affine_transform(head, m[:3, :3], m[:3, 3], output_shape=shape, order=1)
    mask = ndimage.affine_transform(brain.astype(np.float32), m[:3, :3], m[:3, 3], output_shape=shape, order=1) > 0.5
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij"), 0)
    gradient = rng.normal(size=3)
    gradient /= np.linalg.norm(gradient)
    data = data * np.exp(bias * np.tensordot(gradient, grid, 1))
    data = np.abs(data + rng.normal(0, noise, shape).astype(np.float32))
    data = np.clip(np.rint(data * rng.uniform(500, 1500)), 0, 32767).astype(np.int16)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"T1w": out / f"{name}_T1w.nii.gz", "mask": out / f"{name}_brainmask.nii.gz"}
    nib.save(nib.Nifti1Image(data, affine), str(paths["T1w"]))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(paths["mask"]))
    return {"T1w": str(paths["T1w"]), "mask": str(paths["mask"]), "pose": pose, "affine": affine, "shape": shape}


def displacement(sidecar, pose: np.ndarray, resolution_mm: float) -> np.ndarray:
    """Distance (mm) between where a registration chain and the true pose put the template brain's
    grid points in the native scan."""
    from braindl import accuracy, registration

    tpl = templates.load_template(resolution_mm)
    brain = tpl.brain_mask > 0
    chain, base = registration.read_chain(sidecar)
    files, invert = registration.to_native_list(chain, base)
    import json

    source = json.loads(Path(sidecar).read_text())["Source"]
    coords = accuracy._coordinate_images(source)
    est = accuracy._mapped_points(registration._grid(resolution_mm), coords, files, invert)[brain]
    q = np.argwhere(brain) @ tpl.affine[:3, :3].T + tpl.affine[:3, 3]
    true = q @ pose[:3, :3].T + pose[:3, 3]
    return np.linalg.norm(est - true, axis=-1)


def bias_twins(out_dir, seed: int, model=None, noise: float = 0.0, bias: float = 0.15) -> tuple[dict, dict]:
    """The same posed head twice: with a linear bias gradient of +-``bias`` and without one."""
    return (posed_head(out_dir, f"b{seed}", seed, model, noise=noise, bias=bias),
            posed_head(out_dir, f"c{seed}", seed, model, noise=noise, bias=0.0))


class N4Check:
    """What a bias correction does to :func:`bias_twins`, inside the true brain mask (voxels of the
    bias-free head above its 20th intensity percentile): standard deviations of log ratios.

    ``before``: log(biased / clean), the bias there is to remove; :meth:`measure` gives ``residual``,
    log(corrected biased / corrected clean), the bias left, and ``flattening``, log(corrected clean /
    clean), real intensity variation taken for bias in a head that had none."""

    def __init__(self, biased: dict, clean: dict):
        from braindl import registration

        self.mask = registration.load_scan(biased["mask"])
        self.brain = self.mask.numpy() > 0
        self.scans = {k: registration.load_scan(h["T1w"]) for k, h in (("biased", biased), ("clean", clean))}
        raw = {k: s.numpy()[self.brain] for k, s in self.scans.items()}
        self.keep = raw["clean"] > np.percentile(raw["clean"], 20)
        self.raw = {k: v[self.keep] for k, v in raw.items()}
        self.before = float(np.std(np.log(self.raw["biased"] / self.raw["clean"])))

    def measure(self, correct) -> dict:
        """``correct(scan, mask)`` -> corrected ANTs image (e.g. ``braindl.extraction.n4`` with settings)."""
        out = {k: correct(s, self.mask).numpy()[self.brain][self.keep] for k, s in self.scans.items()}
        return {"before": self.before, "residual": float(np.std(np.log(out["biased"] / out["clean"]))),
                "flattening": float(np.std(np.log(out["clean"] / self.raw["clean"])))}
