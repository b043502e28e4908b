from braindl.logs import to_log
from braindl.quality import regimes_figure, sizes_figure

with to_log(snakemake.log):
    figure = {"training_size": sizes_figure, "freezing": regimes_figure}[snakemake.wildcards.dkind]
    figure(snakemake.input.table, snakemake.output[0], snakemake.params.style)
