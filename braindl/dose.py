"""Simulated dose: list-mode-style count resampling of PET and OSEM reconstruction (002).

From a PET activity volume and a total-count scale the acquisition is
simulated and reconstructed at several count levels:

1. The activity is resampled onto a reconstruction grid: RAS orientation,
   axial planes along the last axis, a square in-plane matrix whose inscribed
   circle (the scanner's field of view) holds all the activity.
2. A 2D parallel-beam projector (:class:`ParallelProjector`, torch, CPU or
   CUDA) forward-projects every axial plane into a sinogram of
   ``(planes, angles, radial bins)``; the expected counts are scaled to the
   total count.
3. The full-count data are drawn as Poisson counts per bin. Users with their
   own data feed **events** instead, one record per detected event (its flat
   sinogram bin), as a list-mode file holds them (:func:`read_events`).
4. Each level ``f`` keeps each event with probability ``f``, nested: every
   event of a lower level is in each higher one. On a user's events each event
   gets one uniform number ``u`` and the level keeps those with ``u < f``
   (:func:`thin`). On simulated data the same law is drawn per bin, O(bins)
   rather than O(events) (:func:`thin_counts`): from the full count ``n`` of a
   bin, the largest level draws ``Binomial(n, f_1)`` and each next level
   ``Binomial(n_{k-1}, f_k / f_{k-1})`` from the one above it; each level is
   again Poisson with mean ``f`` times the full one (tested against
   :func:`thin`: means, variances, covariances between levels, nesting).
5. Each level is reconstructed with OSEM (``iterations`` x ``subsets``, the
   subsets interleaved angles), post-filtered with a Gaussian of
   ``postfilter_fwhm_mm`` and normalised to [0, 1].

The simulation has no attenuation, scatter or randoms: the count levels differ
in Poisson noise only, which is what resampling a list-mode file changes.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from nibabel.processing import resample_from_to
from scipy import ndimage

from braindl.io import atomic_path, write_json, write_nifti
from braindl.patches import DoseError, level_label

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
# the projector's default temporaries per call: planes are processed in chunks of at most this size
CPU_CHUNK_MB = 1.0
DEVICE_CHUNK_MB = 256.0


# ---- projector ------------------------------------------------------------------------------------
class ParallelProjector:
    """2D parallel-beam projector applied to every axial plane of a volume.

    Volumes are tensors ``(planes, n, n)`` (rows = y, columns = x); sinograms
    ``(planes, angles, n)`` with the radial bin as wide as a pixel and the
    ``n_angles`` angles evenly over 180 degrees. The line integral for angle
    ``theta`` and radial bin ``r`` sums bilinear samples of the plane, one per
    pixel, along the ray ``r u + t v`` (``u = (cos, sin)``): rotate and sum.
    :meth:`back` is the exact adjoint of :meth:`forward` (the vector-Jacobian
    product of this linear map), so OSEM sees a matched pair.

    Works on any torch device; ``memory_mb`` bounds the temporary of one call
    by processing planes in chunks. By default a GPU gets large chunks (256 MB),
    the CPU small ones that stay in its caches (1 MB: the same numbers, OSEM about
    1.5 times as fast as with 256 MB; ``benchmarks/dose_throughput.py --memory-mb``).
    """

    def __init__(self, n: int, n_angles: int, device="cpu", memory_mb: float | None = None):
        self.n, self.n_angles = int(n), int(n_angles)
        self.device = torch.device(device)
        self.angles = torch.arange(self.n_angles, dtype=torch.float64) * (math.pi / self.n_angles)
        if memory_mb is None:
            memory_mb = CPU_CHUNK_MB if self.device.type == "cpu" else DEVICE_CHUNK_MB
        self.memory_mb = float(memory_mb)
        c = (2 * torch.arange(self.n, dtype=torch.float64) + 1) / self.n - 1  # pixel centres, normalised
        self._t, self._r = torch.meshgrid(c, c, indexing="ij")  # output rows = t (along the ray), cols = r

    def _grid(self, idx: torch.Tensor) -> torch.Tensor:
        th = self.angles[idx.cpu()][:, None, None]
        x = self._r * torch.cos(th) - self._t * torch.sin(th)
        y = self._r * torch.sin(th) + self._t * torch.cos(th)
        return torch.stack([x, y], -1).to(self.device, torch.float32)

    def _chunk(self, n_ang: int) -> int:
        return max(1, int(self.memory_mb * 2**20 // (4 * n_ang * self.n * self.n)))

    def _fwd(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        j = grid.shape[0]
        out = torch.nn.functional.grid_sample(x[None].expand(j, -1, -1, -1), grid, mode="bilinear",
                                              padding_mode="zeros", align_corners=False)
        return out.sum(2).permute(1, 0, 2)  # (planes, angles, radial)

    def forward(self, x: torch.Tensor, idx=None) -> torch.Tensor:
        """Sinogram rows of the angles ``idx`` (all when None) of volume ``x`` ``(planes, n, n)``."""
        idx = torch.arange(self.n_angles) if idx is None else torch.as_tensor(idx)
        grid = self._grid(idx)
        step = self._chunk(len(idx))
        with torch.no_grad():
            return torch.cat([self._fwd(x[z:z + step], grid) for z in range(0, x.shape[0], step)])

    def back(self, y: torch.Tensor, idx=None) -> torch.Tensor:
        """Adjoint of :meth:`forward`: ``(planes, len(idx), n)`` -> ``(planes, n, n)``."""
        idx = torch.arange(self.n_angles) if idx is None else torch.as_tensor(idx)
        grid = self._grid(idx)
        step = self._chunk(len(idx))
        parts = []
        for z in range(0, y.shape[0], step):
            yc = y[z:z + step]
            x0 = torch.zeros((yc.shape[0], self.n, self.n), device=self.device, requires_grad=True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self._fwd(x0, grid), x0, yc)
            parts.append(g)
        return torch.cat(parts)


def resolve_device(name: str = "auto") -> "torch.device":
    """``auto``: CUDA when present, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DoseError("dose.device is cuda, but no CUDA device is available")
    return torch.device(name)


def subsets_of(n_angles: int, n_subsets: int) -> list[np.ndarray]:
    """Interleaved angle subsets: subset ``s`` holds angles ``s, s + S, s + 2S, ...``."""
    if not 1 <= n_subsets <= n_angles:
        raise DoseError(f"dose: {n_subsets} subsets need at least as many angles (have {n_angles})")
    return [np.arange(s, n_angles, n_subsets) for s in range(n_subsets)]


def osem(sinogram: torch.Tensor, projector: ParallelProjector, iterations: int, subsets: int,
         eps: float = 1e-8) -> torch.Tensor:
    """OSEM reconstruction of ``sinogram`` ``(planes, angles, n)`` of counts -> ``(planes, n, n)``.

    Starts from a uniform image inside the field-of-view circle; each
    sub-iteration multiplies by the back-projected ratio of measured to
    estimated counts over the subset, divided by the subset's sensitivity.
    """
    n = projector.n
    c = (2 * torch.arange(n, device=projector.device) + 1) / n - 1
    inside = ((c[:, None] ** 2 + c[None, :] ** 2) <= 1.0).float()
    groups = subsets_of(projector.n_angles, subsets)
    sens = [projector.back(torch.ones((1, len(g), n), device=projector.device), g)[0] for g in groups]
    x = inside.expand(sinogram.shape[0], n, n).clone()
    for _ in range(int(iterations)):
        for g, s in zip(groups, sens):
            est = projector.forward(x, g)
            ratio = torch.where(est > eps, sinogram[:, g] / est.clamp_min(eps), torch.zeros_like(est))
            x = x * projector.back(ratio, g) / torch.where(s > eps, s, torch.ones_like(s)) * (s > eps)
    return x


# ---- grid and activity -------------------------------------------------------------------------
def recon_grid(img: nib.Nifti1Image, voxel_mm: float | None = None, matrix=None,
               threshold: float = 0.02) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the reconstruction grid for ``img``.

    RAS axes, in-plane voxels of ``voxel_mm`` (default: the image's smallest),
    axial spacing the same. Without ``matrix`` the in-plane matrix is the
    smallest square centred on the image whose inscribed circle holds every
    voxel above ``threshold`` x max (after a one-voxel Gaussian smoothing, so
    background noise does not count), and the axial count covers the image.
    """
    img = nib.as_closest_canonical(img)
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
    v = float(voxel_mm) if voxel_mm else float(zooms.min())
    centre = img.affine @ np.r_[(np.asarray(img.shape[:3]) - 1) / 2.0, 1.0]
    if matrix is None:
        data = ndimage.gaussian_filter(np.asarray(img.dataobj, dtype=np.float32), 1.0)  # noise averaged out
        ijk = np.argwhere(data > threshold * max(float(data.max()), 1e-30))
        if len(ijk) == 0:
            raise DoseError("activity volume is empty (no voxel above zero)")
        xyz = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
        radius = float(np.sqrt(((xyz[:, :2] - centre[:2]) ** 2).sum(1)).max()) + v
        n = 2 * int(math.ceil(radius / v)) + 2
        nz = int(math.ceil(img.shape[2] * zooms[2] / v))
        shape = (n, n, nz)
    else:
        shape = tuple(int(m) for m in matrix)
        if shape[0] != shape[1]:
            raise DoseError(f"dose: the in-plane matrix must be square, got {list(shape)}")
    affine = np.diag([v, v, v, 1.0])
    affine[:3, 3] = centre[:3] - v * (np.asarray(shape) - 1) / 2.0
    return shape, affine


def activity_on_grid(pet_path, voxel_mm=None, matrix=None) -> tuple[np.ndarray, np.ndarray, float]:
    """The activity of ``pet_path`` on its reconstruction grid, negatives clipped.

    Returns ``(volume (x, y, z), affine, share of the source's activity
    outside the grid's field-of-view circle)``.
    """
    path = Path(pet_path)
    try:
        img = nib.load(str(path))
        if len(img.shape) != 3 and not (len(img.shape) == 4 and img.shape[3] == 1):
            raise DoseError(f"{path}: expected a 3D PET volume, got shape {img.shape}")
        img = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3]), img.affine)
    except (OSError, nib.filebasedimages.ImageFileError) as exc:
        raise DoseError(f"{path}: cannot read the PET image ({exc})") from exc
    data = np.asarray(img.dataobj)
    if not np.isfinite(data).all():
        raise DoseError(f"{path}: the PET image has non-finite values")
    if data.max() <= 0:
        raise DoseError(f"{path}: the PET image has no positive activity")
    try:
        shape, affine = recon_grid(img, voxel_mm, matrix)
    except DoseError as exc:
        raise DoseError(f"{path}: {exc}") from exc
    vol = np.asarray(resample_from_to(img, (shape, affine), order=1, cval=0.0).dataobj, dtype=np.float32)
    vol = np.clip(vol, 0.0, None)
    n = shape[0]
    c = (np.arange(n) - (n - 1) / 2.0) / (n / 2.0)
    outside = (c[:, None] ** 2 + c[None, :] ** 2) > 1.0
    vol[outside] = 0.0
    # share of the source's activity (voxel sums times voxel volume) that the field of view misses
    source_total = float(np.clip(data, 0, None).sum()) * float(np.prod(img.header.get_zooms()[:3]))
    lost = max(0.0, 1.0 - float(vol.sum()) * float(abs(np.linalg.det(affine[:3, :3]))) / source_total)
    return vol, affine, lost


def to_planes(vol: np.ndarray) -> np.ndarray:
    """``(x, y, z)`` -> ``(z, y, x)``: axial planes with rows = y, columns = x."""
    return np.ascontiguousarray(np.transpose(vol, (2, 1, 0)))


def from_planes(planes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(planes, (2, 1, 0)))


# ---- events and thinning --------------------------------------------------------------------------
def expected_sinogram(vol: np.ndarray, total_counts: float, n_angles: int, device="cpu") -> np.ndarray:
    """Expected counts ``(planes, angles, n)`` of ``vol`` ``(x, y, z)``, summing to ``total_counts``."""
    proj = ParallelProjector(vol.shape[0], n_angles, device)
    sino = proj.forward(torch.from_numpy(to_planes(vol)).to(proj.device)).double().cpu().numpy()
    sino = np.clip(sino, 0.0, None)
    return sino * (float(total_counts) / sino.sum())


def simulated_events(expected: np.ndarray, rng: np.random.Generator, chunk_events: int = 20_000_000):
    """Poisson list-mode events of ``expected`` counts: chunks of flat bin indices (one per event).

    Counts per bin are Poisson; each chunk lists the events of a run of bins
    in random order.
    """
    flat = expected.ravel()
    counts = rng.poisson(flat)
    ends = np.cumsum(counts)
    start_bin = 0
    while start_bin < len(flat):
        done = ends[start_bin - 1] if start_bin else 0
        stop_bin = int(np.searchsorted(ends, done + chunk_events, side="right"))
        stop_bin = max(stop_bin, start_bin + 1)
        bins = np.arange(start_bin, stop_bin, dtype=np.int64)
        ev = np.repeat(bins, counts[start_bin:stop_bin])
        rng.shuffle(ev)
        yield ev
        start_bin = stop_bin


def thin_counts(counts: np.ndarray, fractions, rng: np.random.Generator) -> np.ndarray:
    """Nested binomial thinning of per-bin counts, one histogram per fraction (``(levels, bins)`` int64,
    in the order of ``fractions``): the same law as :func:`thin` on the events of ``counts``, in O(bins).

    Sorted from the largest fraction down, level ``k`` keeps ``Binomial(n_{k-1}, f_k / f_{k-1})`` of the
    level above it (``n_0``: the counts, ``f_0 = 1``): an event is in level ``k`` with probability
    ``f_k``, and every event of a level is in each larger one."""
    counts = np.asarray(counts, dtype=np.int64).ravel()
    fractions = np.asarray(fractions, dtype=np.float64)
    if ((fractions <= 0) | (fractions > 1)).any():
        raise DoseError(f"count fractions must lie in (0, 1], got {fractions.tolist()}")
    out = np.empty((len(fractions), counts.size), dtype=np.int64)
    above, f_above = counts, 1.0
    for k in np.argsort(-fractions, kind="stable"):
        f = float(fractions[k])
        above = above if f == f_above else rng.binomial(above, f / f_above)
        out[k], f_above = above, f
    return out


def thin(event_chunks, n_bins: int, fractions, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Nested binomial thinning of list-mode events into count histograms, one per fraction.

    Each event draws one uniform ``u``; the level of fraction ``f`` keeps the
    events with ``u < f``. Returns ``(counts (levels, n_bins) int64, events
    read)``.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    order = np.argsort(fractions)
    fs = fractions[order]
    hist = np.zeros((len(fs) + 1) * n_bins, dtype=np.int64)
    n_events = 0
    for ev in event_chunks:
        ev = np.asarray(ev)
        if ev.size == 0:
            continue
        u = rng.random(ev.size)
        first = np.searchsorted(fs, u, side="right")  # lowest level (sorted) that keeps the event
        hist += np.bincount(first * n_bins + ev, minlength=hist.size)
        n_events += ev.size
    per_first = hist.reshape(len(fs) + 1, n_bins)[: len(fs)]
    nested = np.cumsum(per_first, axis=0)  # level k keeps the events first kept at any level <= k
    out = np.empty_like(nested)
    out[order] = nested
    return out, n_events


# ---- user events --------------------------------------------------------------------------------
def read_events(events_npy, chunk_events: int = 20_000_000):
    """Geometry and event chunks of a user's list-mode file.

    Format: ``<name>_events.npy``, a 1D integer array with one entry per
    detected event, the flat index (C order) of its bin in a sinogram of
    ``(planes, angles, radial bins)``; beside it ``<name>_events.json`` with
    ``SinogramShape`` ``[planes, angles, radial]`` (radial bins = the in-plane
    matrix, angles evenly over 180 degrees as in :class:`ParallelProjector`),
    ``Affine`` (4 x 4 of the RAS reconstruction grid ``(radial, radial,
    planes)``). Returns ``(shape, affine, generator of chunks)``.
    """
    path = Path(events_npy)
    side = path.with_name(path.name[: -len(".npy")] + ".json") if path.name.endswith(".npy") else None
    if side is None or not path.is_file():
        raise DoseError(f"{path}: events file missing or not a .npy file")
    if not side.is_file():
        raise DoseError(f"{path}: sidecar {side.name} with SinogramShape and Affine is missing")
    meta = json.loads(side.read_text())
    try:
        shape = tuple(int(v) for v in meta["SinogramShape"])
        affine = np.asarray(meta["Affine"], dtype=float)
    except (KeyError, TypeError, ValueError) as exc:
        raise DoseError(f"{side}: needs SinogramShape [planes, angles, radial] and a 4x4 Affine ({exc})") from exc
    if len(shape) != 3 or min(shape) < 1 or affine.shape != (4, 4):
        raise DoseError(f"{side}: SinogramShape must have 3 positive sizes and Affine be 4x4")
    try:
        ev = np.load(str(path), mmap_mode="r")
    except ValueError as exc:
        raise DoseError(f"{path}: not a readable .npy array ({exc})") from exc
    if ev.ndim != 1 or not np.issubdtype(ev.dtype, np.integer):
        raise DoseError(f"{path}: expected a 1D integer array of bin indices, got {ev.dtype} {ev.shape}")
    n_bins = int(np.prod(shape))
    for start in range(0, len(ev), chunk_events):
        part = np.asarray(ev[start:start + chunk_events])
        if part.size and (part.min() < 0 or part.max() >= n_bins):
            raise DoseError(f"{path}: bin indices outside the sinogram of shape {list(shape)} "
                            f"(events {start}..{start + len(part) - 1})")

    def chunks():
        for start in range(0, len(ev), chunk_events):
            yield np.asarray(ev[start:start + chunk_events], dtype=np.int64)

    return shape, affine, chunks()


def write_events(path, event_chunks, shape, affine) -> int:
    """Write events (chunks of flat bins) in the format of :func:`read_events`; returns the count."""
    ev = np.concatenate([np.asarray(c, dtype=np.int64) for c in event_chunks])
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, ev)
    write_json(path.with_name(path.name[: -len(".npy")] + ".json"),
               {"SinogramShape": [int(s) for s in shape], "Affine": np.asarray(affine).tolist()})
    return len(ev)


# ---- stage entry points -----------------------------------------------------------------------------
def total_counts_of(pet_path, configured: float | None) -> float:
    """The full-dose count of a scan: the configured one, else the sidecar's ``TotalCounts``."""
    if configured:
        return float(configured)
    side = Path(str(pet_path).replace(".nii.gz", ".json").replace(".nii", ".json"))
    if side.is_file():
        value = json.loads(side.read_text()).get("TotalCounts")
        if value:
            return float(value)
    raise DoseError(f"{pet_path}: no count level: set dose.total_counts or add TotalCounts to {side.name}")


def run_resample(source, settings: dict, seed: int, out_npz, out_json, total_counts: float | None = None,
                 device: str = "cpu", threads: int | None = None) -> dict:
    """Simulate (or read) the events of one scan and write the counts of every level.

    ``source``: a PET NIfTI (simulated acquisition with ``total_counts``) or a
    user's ``*_events.npy``. ``out_npz`` holds ``counts`` ``(levels, planes,
    angles, radial)``, ``levels`` (percent), ``affine`` and ``expected_total``.
    """
    if threads:
        torch.set_num_threads(int(threads))
    t0 = time.perf_counter()
    source = Path(source)
    levels = [float(v) for v in settings["levels"]]
    rng = np.random.default_rng(seed)
    meta = {"Source": str(source), "Levels": levels}
    if source.name.endswith("_events.npy"):
        shape, affine, chunks = read_events(source)
        meta.update(Simulated=False)
    else:
        vol, affine, lost = activity_on_grid(source, settings.get("voxel_size_mm"), settings.get("matrix"))
        if lost > 0.02:
            raise DoseError(f"{source}: {100 * lost:.1f} % of the activity lies outside the field of view of "
                            f"the configured dose.matrix; enlarge it")
        expected = expected_sinogram(vol, total_counts, int(settings["angles"]), resolve_device(device))
        shape = expected.shape
        meta.update(Simulated=True, TotalCounts=float(total_counts), ActivityOutsideFOV=lost)
    t1 = time.perf_counter()
    if meta["Simulated"]:  # per bin: Poisson counts, then nested binomial levels (the law of event thinning)
        full = rng.poisson(expected.ravel())
        counts, n_events = thin_counts(full, [v / 100.0 for v in levels], rng), int(full.sum())
    else:
        counts, n_events = thin(chunks, int(np.prod(shape)), [v / 100.0 for v in levels], rng)
    t2 = time.perf_counter()
    counts = counts.reshape(len(levels), *shape)
    dtype = np.uint16 if counts.max() < 2**16 else np.uint32
    with atomic_path(out_npz) as tmp:
        np.savez_compressed(tmp, counts=counts.astype(dtype), levels=np.asarray(levels), affine=affine)
    meta.update(SinogramShape=list(shape), Events=int(n_events),
                CountsPerLevel={level_label(v): int(c) for v, c in zip(levels, counts.reshape(len(levels), -1).sum(1))},
                EventSeconds=round(t2 - t1, 3), EventsPerSecond=round(n_events / max(t2 - t1, 1e-9)),
                EventSecondsDescription="drawing the counts and their levels per bin (simulated data), or "
                                        "reading the events and thinning them one by one",
                Seconds=round(time.perf_counter() - t0, 3), Seed=int(seed))
    write_json(out_json, meta)
    return meta


def postfilter(vol: np.ndarray, fwhm_mm: float, voxel_mm) -> np.ndarray:
    if not fwhm_mm:
        return vol
    sigma = [float(fwhm_mm) * FWHM_TO_SIGMA / float(v) for v in np.broadcast_to(voxel_mm, 3)]
    return ndimage.gaussian_filter(vol, sigma, mode="constant")


def normalise(vol: np.ndarray) -> np.ndarray:
    lo, hi = float(vol.min()), float(vol.max())
    return (vol - lo) / (hi - lo) if hi > lo else np.zeros_like(vol)


def reconstruct(counts: np.ndarray, iterations: int, subsets: int, device="cpu",
                memory_mb: float | None = None) -> np.ndarray:
    """OSEM of a count sinogram ``(planes, angles, n)`` -> volume ``(x, y, z)`` (count units);
    ``memory_mb``: the projector's chunk size (:class:`ParallelProjector`; the numbers do not depend on it)."""
    proj = ParallelProjector(counts.shape[2], counts.shape[1], device, memory_mb)
    sino = torch.as_tensor(np.asarray(counts, dtype=np.float32), device=proj.device)
    return from_planes(osem(sino, proj, iterations, subsets).cpu().numpy())


def _load_levels(counts_npz, levels) -> tuple[list[float], np.ndarray, np.ndarray]:
    """The count levels of ``counts_npz``, its counts (read once) and affine; levels not in it are refused
    before anything is reconstructed."""
    with np.load(counts_npz) as z:
        have = [float(v) for v in z["levels"]]
        missing = sorted(float(v) for v in levels if float(v) not in have)
        if missing:
            raise DoseError(f"{counts_npz}: has no count level {', '.join(f'{v:g}' for v in missing)} "
                            f"(levels {have})")
        return have, z["counts"], z["affine"]


def _reconstruct_level(counts: np.ndarray, affine: np.ndarray, level: float, settings: dict, out_nii, out_json,
                       dev, source) -> dict:
    t0 = time.perf_counter()
    vol = reconstruct(counts, int(settings["iterations"]), int(settings["subsets"]), dev)
    t1 = time.perf_counter()
    voxel = np.sqrt((affine[:3, :3] ** 2).sum(0))
    vol = postfilter(vol, float(settings["postfilter_fwhm_mm"]), voxel)
    peak = float(vol.max())
    write_nifti(out_nii, normalise(vol).astype(np.float32), affine)
    meta = {"CountLevelPercent": float(level), "Counts": int(counts.sum()),
            "Iterations": int(settings["iterations"]), "Subsets": int(settings["subsets"]),
            "PostfilterFWHMmm": float(settings["postfilter_fwhm_mm"]), "Normalisation": "min-max to [0, 1]",
            "PeakBeforeNormalisation": peak, "ReconstructionSeconds": round(t1 - t0, 3), "Device": str(dev),
            "Source": str(source)}
    write_json(out_json, meta)
    return meta


def run_reconstructions(counts_npz, settings: dict, outs: dict, device: str = "cpu",
                        threads: int | None = None) -> list[dict]:
    """Every count level of one scan in one job: OSEM, post-filter, [0, 1]; a NIfTI + JSON per ``outs``
    entry, ``{level (percent): (out_nii, out_json)}``. The counts are read once; levels missing from
    ``counts_npz`` are refused before any is reconstructed."""
    if threads:
        torch.set_num_threads(int(threads))
    have, counts, affine = _load_levels(counts_npz, list(outs))
    dev = resolve_device(device)
    return [_reconstruct_level(counts[have.index(float(level))], affine, level, settings, nii, js, dev, counts_npz)
            for level, (nii, js) in outs.items()]


def run_scan(source, resample: dict, reconstruct_settings: dict, seed: int, counts_out: dict, outs: dict,
             total_counts: float | None = None, device: str = "cpu", threads: int | None = None) -> dict:
    """One scan's dose chain in one process (rule dose_reconstruct): the counts of every level of
    ``resample`` (:func:`run_resample`, to ``counts_out['counts']`` and ``counts_out['json']``: simulated
    from the PET with its total counts, :func:`total_counts_of` over ``total_counts``, or thinned from a
    user's ``*_events.npy``), then the reconstructions ``outs`` (:func:`run_reconstructions`). The draws
    depend on ``seed`` alone, so the counts equal a separate resampling's. Levels of ``outs`` that
    ``resample`` does not make are refused before anything is read. Returns the counts' sidecar."""
    missing = sorted(float(v) for v in outs if float(v) not in [float(x) for x in resample["levels"]])
    if missing:
        raise DoseError(f"{source}: reconstructions of count levels {missing} that dose.levels does not make")
    counts = None if Path(source).name.endswith("_events.npy") else total_counts_of(source, total_counts)
    meta = run_resample(source, resample, seed, counts_out["counts"], counts_out["json"], counts, device, threads)
    run_reconstructions(counts_out["counts"], reconstruct_settings, outs, device, threads)
    return meta


def run_reconstruct(counts_npz, level: float, settings: dict, out_nii, out_json, device: str = "cpu",
                    threads: int | None = None) -> dict:
    """Reconstruct one count level of ``counts_npz`` (:func:`run_reconstructions` of that level)."""
    return run_reconstructions(counts_npz, settings, {level: (out_nii, out_json)}, device, threads)[0]
