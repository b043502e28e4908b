from braindl.logs import to_log
from braindl.transfer import roc_figure

with to_log(snakemake.log):
    roc_figure(snakemake.params.groups, snakemake.output[0], snakemake.params.style)
