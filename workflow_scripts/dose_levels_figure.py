from braindl.logs import to_log
from braindl.quality import levels_figure

with to_log(snakemake.log):
    levels_figure(dict(zip(snakemake.params.levels, snakemake.input)), snakemake.output[0], snakemake.params.style)
