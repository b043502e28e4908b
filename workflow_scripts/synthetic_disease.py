from braindl.logs import to_log
from braindl.synthetic import run_disease

with to_log(snakemake.log):
    run_disease(
        snakemake.params.settings,
        snakemake.input.model,
        snakemake.wildcards.diagnosis,
        snakemake.output.npz,
        snakemake.params.truth_dir,
    )
