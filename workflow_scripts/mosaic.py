from braindl.logs import to_log
from braindl.mosaic import run_mosaics

with to_log(snakemake.log):
    run_mosaics(
        snakemake.input.volumes,
        snakemake.input.index,
        snakemake.params.layout,
        snakemake.params.scale,
        snakemake.output.mosaics,
        snakemake.output.index,
        snakemake.output.json,
    )
