from braindl.logs import to_log
from braindl.splits import run_splits

with to_log(snakemake.log):
    run_splits(snakemake.input.manifest, snakemake.wildcards.task, snakemake.params.settings, list(snakemake.output),
               snakemake.input.qc, snakemake.params.modalities)
