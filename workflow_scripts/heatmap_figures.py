from braindl.atlas import METHOD_FIGURES, method_figures
from braindl.logs import to_log

with to_log(snakemake.log):
    i, p = snakemake.input, snakemake.params
    method_figures(i.groups, i.groups_tsv, i.meanbrain, i.summary, p.group, p.top, p.titles,
                   {k: snakemake.output[k] for k in METHOD_FIGURES}, p.dpi)
