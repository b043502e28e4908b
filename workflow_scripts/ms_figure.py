from braindl.logs import to_log
from braindl.msstudy import study_figure

with to_log(snakemake.log):
    i = snakemake.input
    study_figure(i.runs, i.relevance, i.summary, snakemake.output[0], snakemake.params.style)
