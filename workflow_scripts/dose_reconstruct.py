from braindl.dose import run_reconstruct
from braindl.logs import to_log

with to_log(snakemake.log):
    run_reconstruct(snakemake.input[0], snakemake.params.level, snakemake.params.settings, snakemake.output.pet,
                    snakemake.output.json, snakemake.params.device, threads=snakemake.threads)
