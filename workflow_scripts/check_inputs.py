from braindl.inputs import run_check
from braindl.logs import to_log

with to_log(snakemake.log):
    run_check(
        snakemake.params.bids_dir,
        snakemake.params.diagnoses,
        snakemake.params.modalities,
        snakemake.output[0],
        threads=snakemake.threads,
    )
