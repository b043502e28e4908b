"""Parse time of the workflow with and without the code digests kept between parses.

    python benchmarks/parse.py                 # the default config, 5 dry runs of each kind
    python benchmarks/parse.py --repeats 10 --configfile configs/laptop.yaml

Every dry run, cluster job and module parses the Snakefile, and every rule's
``params: code=`` digests the workflow script and the library modules it imports
(braindl.provenance). The digests are kept per file content in
``.snakemake/braindl/code_digests.json`` of the checkout. This runs ``snakemake -n all`` in an
empty folder alternately cold (the file deleted first) and warm (the file kept),
so that both kinds see the same machine load, and prints the median wall time of
each, their ratio, and the time of the digests alone in this process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CACHE = REPO / ".snakemake" / "braindl" / "code_digests.json"  # rules/common.smk


def dry_run(folder: Path, configfile: str | None) -> float:
    cmd = [sys.executable, "-m", "snakemake", "all", "-n", "-s", str(REPO / "Snakefile"), "--directory", str(folder)]
    if configfile:
        cmd += ["--configfile", str(Path(configfile).resolve())]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(out.stdout + out.stderr)
    return seconds


def digest_seconds() -> tuple[float, float]:
    """Seconds to digest every workflow script (with its modules) in a fresh state: without and with a
    filled digest cache."""
    from braindl import provenance

    scripts = sorted((REPO / "workflow_scripts").glob("*.py"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for p in scripts:
            provenance.script_hash(p)
        cold = time.perf_counter() - t0
        provenance.use_digest_cache(Path(tmp) / "digests.json")
        provenance._MEMORY.clear()
        for p in scripts:
            provenance.script_hash(p)
        provenance._MEMORY.clear()
        t0 = time.perf_counter()
        for p in scripts:
            provenance.script_hash(p)
        warm = time.perf_counter() - t0
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configfile", default=None)
    args = parser.parse_args()
    cold, warm = digest_seconds()
    print(f"digests of the {len(list((REPO / 'workflow_scripts').glob('*.py')))} workflow scripts in one process: "
          f"{cold:.2f} s parsed, {warm:.2f} s from the cache")
    times = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        dry_run(folder, args.configfile)  # fills the cache and Python's own caches
        for _ in range(args.repeats):
            CACHE.unlink(missing_ok=True)
            times["cold"].append(dry_run(folder, args.configfile))
            times["warm"].append(dry_run(folder, args.configfile))
    c, w = statistics.median(times["cold"]), statistics.median(times["warm"])
    print(f"dry run of all ({args.configfile or 'config.yaml'}), median of {args.repeats}: "
          f"without kept digests {c:.2f} s, with {w:.2f} s; ratio {c / w:.2f}")


if __name__ == "__main__":
    main()
