from braindl.logs import to_log
from braindl.registration import run_variant

with to_log(snakemake.log):
    run_variant(
        snakemake.params.variant,
        snakemake.params.settings,
        {k: snakemake.input[k] for k in snakemake.input.keys() if not k.startswith("previous_")},
        {k[len("previous_"):]: snakemake.input[k] for k in snakemake.input.keys() if k.startswith("previous_")},
        {k: snakemake.output[k] for k in snakemake.output.keys()},
        threads=snakemake.threads,
    )
