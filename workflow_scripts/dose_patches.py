from braindl.logs import to_log
from braindl.patches import run_patches

with to_log(snakemake.log):
    run_patches(snakemake.input[0], snakemake.params.settings, snakemake.params.seed, snakemake.output.patches,
                snakemake.output.json)
