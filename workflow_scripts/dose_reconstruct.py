from braindl.dose import run_reconstructions
from braindl.logs import to_log

with to_log(snakemake.log):
    run_reconstructions(snakemake.input[0], snakemake.params.settings,
                        {v: (snakemake.output[f"pet_{k}"], snakemake.output[f"json_{k}"])
                         for k, v in snakemake.params.levels.items()},
                        snakemake.params.device, threads=snakemake.threads)
