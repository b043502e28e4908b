from braindl.logs import to_log
from braindl.pifstudy import run_study_tables

with to_log(snakemake.log):
    run_study_tables(snakemake.params.runs, snakemake.output.runs, snakemake.output.summary)
