from braindl.atlas import robustness_figure
from braindl.logs import to_log

with to_log(snakemake.log):
    robustness_figure(snakemake.input[0], snakemake.params.title, snakemake.output[0], snakemake.params.dpi)
