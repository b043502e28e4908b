from braindl.evaluation import run_evaluation
from braindl.logs import to_log

with to_log(snakemake.log):
    run_evaluation(
        snakemake.params.runs,
        snakemake.params.n_boot,
        snakemake.params.ci,
        snakemake.output.metrics,
        snakemake.output.summary,
        snakemake.output.comparison,
    )
