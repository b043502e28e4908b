from braindl.logs import to_log
from braindl.pifstudy import study_figure

with to_log(snakemake.log):
    study_figure(snakemake.input[0], snakemake.output[0], snakemake.params.style)
