from braindl.groupmaps import run_group_maps
from braindl.logs import to_log

with to_log(snakemake.log):
    i = snakemake.input
    run_group_maps(snakemake.params.runs, snakemake.params.target, snakemake.params.control, i.pack, i.pack_index,
                   i.pack_json, dict(snakemake.output))
