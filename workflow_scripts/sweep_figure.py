from braindl.logs import to_log
from braindl.pretraining import sweep_figure

with to_log(snakemake.log):
    sweep_figure(snakemake.input[0], snakemake.output[0], snakemake.params.style)
