from braindl.groupmaps import display_figure, statmap_figure
from braindl.logs import to_log

with to_log(snakemake.log):
    i, p = snakemake.input, snakemake.params
    draw = display_figure if p.kind == "display" else statmap_figure
    draw(i.groups, i.groups_tsv, i.meanbrain, p.group, p.title, snakemake.output[0], p.dpi)
