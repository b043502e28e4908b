from braindl.atlas import regions_figure
from braindl.logs import to_log

with to_log(snakemake.log):
    p = snakemake.params
    regions_figure(snakemake.input[0], p.top, p.title, snakemake.output[0], p.dpi)
