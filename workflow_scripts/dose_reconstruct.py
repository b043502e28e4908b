from braindl.dose import run_scan
from braindl.logs import to_log

with to_log(snakemake.log):
    p, o = snakemake.params, snakemake.output
    run_scan(snakemake.input.scan, p.resample, p.settings, p.seed, {"counts": o.counts, "json": o.json},
             {v: (o[f"pet_{k}"], o[f"json_{k}"]) for k, v in p.levels.items()},
             total_counts=p.total_counts, device=p.device, threads=snakemake.threads)
