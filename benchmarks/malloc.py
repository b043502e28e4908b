"""CPU time of a preprocessing run with braindl's malloc settings and with glibc's defaults, side by side.

    python benchmarks/malloc.py                  # 4 + 4 subjects, all variants, 2 cores, 2 pairs
    python benchmarks/malloc.py --pairs 1 --cores 1

braindl sets glibc's malloc to keep freed arrays up to 32 MiB for reuse when it is imported
(``braindl.MALLOC_TUNED``); a ``MALLOC_*_`` variable in the environment leaves glibc's defaults
alone, which is how the "glibc" runs here get them: ``MALLOC_PERTURB_=0``, glibc's default, which changes
nothing else (setting ``MALLOC_TOP_PAD_`` or a threshold would switch off glibc's own dynamic threshold).
Each pair runs ``snakemake preprocessing`` from an empty folder in both ways, alternately, on the
same small synthetic cohort, and prints per run: wall seconds, CPU seconds of all its processes
(user + system), and minor page faults; then the ratios of the sums.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
COHORT = {"synthetic": {"groups": {"CN": 4, "MCI": 0, "AD": 4, "DLB": 0, "FTLD": 0}, "sessions": [1, 1]},
          # the test suite's coarse N4 and SyN: the allocations, not the iterations, are measured
          "registration": {"affine_iterations": [100, 50, 0, 0], "syn_iterations": [10, 0, 0]},
          "skullstrip": {"n4": {"enabled": True, "shrink_factor": 6, "iterations": [20], "tolerance": 1.0e-3,
                                "spline_distance_mm": 200}}}


def run(folder: Path, cores: int, glibc: bool) -> dict:
    folder.mkdir(parents=True)
    (folder / "bench.yaml").write_text(yaml.safe_dump(COHORT))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if glibc:
        env["MALLOC_PERTURB_"] = "0"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "snakemake", "preprocessing", "-s", str(REPO / "Snakefile"),
                          "--directory", str(folder), "--cores", str(cores), "--configfile", "bench.yaml"],
                         capture_output=True, text=True, env=env, cwd=folder)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "sys": after.ru_stime - before.ru_stime, "faults": after.ru_minflt - before.ru_minflt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    sums = {True: {"wall": 0.0, "cpu": 0.0, "sys": 0.0, "faults": 0}, False: {"wall": 0.0, "cpu": 0.0, "sys": 0.0, "faults": 0}}
    with tempfile.TemporaryDirectory(prefix="braindl_malloc_") as tmp:
        for k in range(args.pairs):
            for glibc in (True, False):
                r = run(Path(tmp) / f"{k}_{'glibc' if glibc else 'braindl'}", args.cores, glibc)
                for key in r:
                    sums[glibc][key] += r[key]
                print(f"pair {k + 1} {'glibc defaults' if glibc else 'braindl      '}: {r['wall']:6.1f} s wall, "
                      f"{r['cpu']:6.1f} CPU s ({r['sys']:5.1f} system), {r['faults']:>9d} minor page faults",
                      flush=True)
    new, old = sums[False], sums[True]
    print(f"braindl / glibc: wall {new['wall'] / old['wall']:.3f}, CPU {new['cpu'] / old['cpu']:.3f}, "
          f"system {new['sys'] / old['sys']:.3f}, page faults {new['faults'] / old['faults']:.3f}")


if __name__ == "__main__":
    main()
