from braindl.logs import to_log
from braindl.qc import run_qc_table

with to_log(snakemake.log):
    run_qc_table(
        snakemake.params.settings,
        list(snakemake.input.rows),
        snakemake.input.manifest,
        {k: snakemake.output[k] for k in snakemake.output.keys() if k != "scans"},
        snakemake.output.scans,
    )
