from braindl.atlas import run_groundtruth
from braindl.logs import to_log

with to_log(snakemake.log):
    p = snakemake.params
    run_groundtruth(p.methods, snakemake.input.mask, p.target, p.atlas, snakemake.input.pack_json,
                    snakemake.output.table, snakemake.output.figure, dpi=p.dpi)
