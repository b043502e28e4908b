from braindl.logs import to_log
from braindl.transfer import metrics_figure

with to_log(snakemake.log):
    metrics_figure(snakemake.params.runs, snakemake.output[0], snakemake.params.style)
