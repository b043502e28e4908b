"""Speed of the dose branch (braindl.dose): list-mode events per second, seconds per OSEM reconstruction.

    python benchmarks/dose_throughput.py                       # CPU, default settings
    python benchmarks/dose_throughput.py --device cuda         # projector on the GPU
    python benchmarks/dose_throughput.py --full                # also 002's 344 x 344 x 127, 252 angles, 2 x 21
    python benchmarks/dose_throughput.py --full --full-levels 0.5 100
    python benchmarks/dose_throughput.py --memory-mb 256 1   # OSEM with each projector chunk size, side by side

Phantom: an FDG-like activity from the MNI152 2009 tissue maps nilearn bundles
(grey matter 1, white matter 0.25, the rest of the brain mask 0.05) on the reconstruction grid of
each setting: ``default`` = config.yaml's dose section on a 2.3 mm PET grid
(the synthetic cohort's), ``full`` = configs/full_protocol.yaml's.
Per setting it prints the grid, then the count levels drawn two ways, side by
side: as list-mode events (Poisson events, each thinned one by one: what a
user's events file goes through) and per sinogram bin (Poisson counts, nested
binomial levels: what simulated data go through), with the ratio; then one
line per count level with the OSEM + post-filter seconds. OSEM's cost does not depend on
the count level; the lines show it. With ``--memory-mb`` each level is reconstructed once per
projector chunk size (``braindl.dose.ParallelProjector``'s ``memory_mb``), the sizes alternating, and
the line says whether the volumes are identical.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import yaml
from nilearn import datasets, image

from braindl import dose

REPO = Path(__file__).resolve().parents[1]


def phantom(voxel_mm: float) -> nib.Nifti1Image:
    gm = datasets.load_mni152_gm_template(resolution=2)
    wm = datasets.load_mni152_wm_template(resolution=2)
    brain = datasets.load_mni152_brain_mask(resolution=2)
    g, w = gm.get_fdata(), wm.get_fdata()
    rest = np.clip(brain.get_fdata() - g - w, 0, 1)  # CSF and the rest of the brain mask
    act = 1.0 * g + 0.25 * w + 0.05 * rest
    img = nib.Nifti1Image(act.astype(np.float32), gm.affine)
    return image.resample_img(img, target_affine=np.diag([voxel_mm] * 3), interpolation="linear",
                              force_resample=True, copy_header=True)


def _peak(device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB GPU"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS"


def bench(name: str, settings: dict, counts: float, levels, device, tmp: Path, memory=(None,)) -> None:
    img = phantom(2.3 if settings["voxel_size_mm"] is None else float(settings["voxel_size_mm"]))
    path = tmp / f"{name}_pet.nii.gz"
    nib.save(img, str(path))
    vol, _, lost = dose.activity_on_grid(path, settings["voxel_size_mm"], settings["matrix"])
    print(f"{name}: grid {vol.shape}, {settings['angles']} angles, OSEM {settings['iterations']} x "
          f"{settings['subsets']}, {settings['postfilter_fwhm_mm']} mm post-filter, {counts:.3g} events, "
          f"device {device}", flush=True)
    t0 = time.perf_counter()
    expected = dose.expected_sinogram(vol, counts, int(settings["angles"]), device)
    t1 = time.perf_counter()
    rng = np.random.default_rng(0)
    chunks = list(dose.simulated_events(expected, rng))
    t2 = time.perf_counter()
    n_events = sum(len(c) for c in chunks)
    fractions = [v / 100 for v in settings["levels"]]
    hist, _ = dose.thin(iter(chunks), expected.size, fractions, rng)
    t3 = time.perf_counter()
    del chunks
    print(f"  forward projection {t1 - t0:.2f} s; {n_events:,} events drawn in {t2 - t1:.2f} s "
          f"({n_events / (t2 - t1) / 1e6:.1f} M events/s), thinned into {len(fractions)} levels in {t3 - t2:.2f} s "
          f"({n_events / (t3 - t2) / 1e6:.1f} M events/s)", flush=True)
    t4 = time.perf_counter()
    per_bin = dose.thin_counts(rng.poisson(expected.ravel()), fractions, rng)
    t5 = time.perf_counter()
    print(f"  per bin ({expected.size:,} bins): counts and {len(fractions)} levels in {t5 - t4:.2f} s; events: "
          f"{t3 - t1:.2f} s; ratio {(t3 - t1) / max(t5 - t4, 1e-9):.1f}x; counts per level "
          f"{per_bin.sum(1).tolist()} vs {hist.sum(1).tolist()}", flush=True)
    for lv in levels:
        k = [float(v) for v in settings["levels"]].index(float(lv))
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        osem, recs = [], []
        for mb in memory:
            t0 = time.perf_counter()
            recs.append(dose.reconstruct(hist[k].reshape(expected.shape), int(settings["iterations"]),
                                         int(settings["subsets"]), device, mb))
            osem.append(time.perf_counter() - t0)
        if len(memory) > 1:
            same = all(np.array_equal(recs[0], r) for r in recs[1:])
            times = ", ".join(f"{mb} MB {t:.2f} s" for mb, t in zip(memory, osem))
            print(f"  level {float(lv):5g} %: OSEM with chunks of {times}; identical volumes: {same}", flush=True)
            continue
        t1 = time.perf_counter()
        dose.postfilter(recs[0], float(settings["postfilter_fwhm_mm"]), settings["voxel_size_mm"] or 2.3)
        t2 = time.perf_counter()
        print(f"  level {float(lv):5g} %: {int(hist[k].sum()):>12,} counts  OSEM {osem[0]:7.2f} s  "
              f"post-filter {t2 - t1:5.2f} s  (peak {_peak(device)})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--counts", type=float, default=None, help="full-dose events (default: synthetic.pet_total_counts)")
    ap.add_argument("--full", action="store_true", help="also the full-size protocol")
    ap.add_argument("--full-levels", type=float, nargs="+", default=None,
                    help="count levels reconstructed at full size (default: all)")
    ap.add_argument("--tmp", default="/tmp")
    ap.add_argument("--memory-mb", type=float, nargs="+", default=None,
                    help="projector chunk sizes to compare (default: the device's default only)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    counts = args.counts or float(config["synthetic"]["pet_total_counts"])
    default = config["dose"]
    memory = tuple(args.memory_mb or (None,))
    bench("default", default, counts, default["levels"], device, Path(args.tmp), memory)
    if args.full:
        full = {**default, **yaml.safe_load((REPO / "configs/full_protocol.yaml").read_text())["dose"]}
        bench("full", full, counts, args.full_levels or full["levels"], device, Path(args.tmp), memory)


if __name__ == "__main__":
    main()
