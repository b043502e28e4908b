from braindl.figures import variant_figure
from braindl.logs import to_log

with to_log(snakemake.log):
    variant_figure(
        snakemake.params.kind,
        snakemake.input.metrics,
        snakemake.input.summary,
        snakemake.input.comparison,
        list(snakemake.input.predictions),
        snakemake.params.variants,
        snakemake.params.style,
        snakemake.output[0],
    )
