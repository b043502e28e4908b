from braindl.atlas import run_regions
from braindl.logs import to_log

with to_log(snakemake.log):
    p = snakemake.params
    run_regions(p.runs, p.target, p.control, p.atlas, snakemake.input.pack_json, snakemake.output.regions,
                snakemake.output.summary, convention=p.convention)
