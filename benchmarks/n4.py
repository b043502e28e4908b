"""N4 settings on heads the synthetic generator did not make: bias removed, anatomy flattened, seconds.

Each head comes from ``tests/posed_heads.py`` (the MNI152 template with scalp shells, a random pose,
voxel size and noise) twice: with a known +-15 % linear bias gradient and without it. N4 runs on both
inside the true brain mask, as the workflow runs it (``braindl.extraction.n4``), with
``config.yaml``'s ``skullstrip.n4`` changed by each setting below. Printed per head and setting,
inside the brain (voxels above the 20th intensity percentile):

* ``before``: standard deviation of log(biased / clean), the bias there is to remove;
* ``residual``: the same after N4 of both, the bias N4 left (lower is better);
* ``flattening``: standard deviation of log(N4(clean) / clean), real intensity variation N4 took for
  bias in a head that had none (lower is better);
* ``seconds``: one N4, mean of the two, at ``--threads`` ITK threads.

    python benchmarks/n4.py                       # heads 5, 21, 33; 1 thread
    python benchmarks/n4.py --heads 5 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

# name: changes of skullstrip.n4
SETTINGS = {
    "shrink 4, 50x50": dict(shrink_factor=4, iterations=[50, 50]),
    "shrink 6, 50x50": dict(shrink_factor=6, iterations=[50, 50]),
    "shrink 6, 25x25x25": dict(shrink_factor=6, iterations=[25, 25, 25]),
    "shrink 4, 50": dict(shrink_factor=4, iterations=[50]),
    "shrink 6, 50": dict(shrink_factor=6, iterations=[50]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", type=int, nargs="+", default=[5, 21, 33], help="posed-head seeds")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)
    import posed_heads

    from braindl import extraction

    base = yaml.safe_load((REPO / "config.yaml").read_text())["skullstrip"]
    model = posed_heads.head_model()
    print(f"config.yaml's N4: {base['n4']}; {args.threads} thread(s)")
    print(f"{'head':>4} {'setting':20} {'before':>7} {'residual':>8} {'flattening':>10} {'seconds':>7}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.heads:
            check = posed_heads.N4Check(*posed_heads.bias_twins(tmp, seed, model, noise=0.02))
            for name, change in SETTINGS.items():
                settings = {**base, "n4": {**base["n4"], **change}}
                t = time.perf_counter()
                got = check.measure(lambda scan, mask, s=settings: extraction.n4(scan, mask, s))
                seconds = (time.perf_counter() - t) / 2
                print(f"{seed:>4} {name:20} {got['before']:7.4f} {got['residual']:8.4f} {got['flattening']:10.4f} "
                      f"{seconds:7.1f}", flush=True)


if __name__ == "__main__":
    main()
