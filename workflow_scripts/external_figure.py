from braindl.external import figure
from braindl.logs import to_log

with to_log(snakemake.log):
    figure(snakemake.input[0], snakemake.output[0], snakemake.params.style, snakemake.params.title)
