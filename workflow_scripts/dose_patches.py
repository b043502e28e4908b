from braindl.logs import to_log
from braindl.patches import run_scan_patches

with to_log(snakemake.log):
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    # every level of the scan, each with its seed
    run_scan_patches({lv: i[f"pet_{lv}"] for lv in p.seeds}, p.settings, p.seeds,
                     {lv: (o[f"patches_{lv}"], o[f"json_{lv}"]) for lv in p.seeds})
