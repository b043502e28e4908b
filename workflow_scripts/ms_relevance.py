from braindl.logs import to_log
from braindl.msstudy import run_relevance

with to_log(snakemake.log):
    masks = {(pid, ses): (lesion, brain) for pid, ses, lesion, brain in snakemake.params.masks}
    run_relevance(snakemake.params.runs, masks, snakemake.output.table, snakemake.output.summary,
                  snakemake.params.lesion_groups)
