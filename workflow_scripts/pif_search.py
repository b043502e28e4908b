import braindl.training  # noqa: F401  torch and MONAI load here, before the timed library call (braindl.logs)
from braindl.logs import to_log
from braindl.pifstudy import run_search

with to_log(snakemake.log):
    i, p = snakemake.input, snakemake.params
    run_search(i.data, i.index, i.split, snakemake.wildcards.task, int(snakemake.wildcards.split), p.runs,
               dict(snakemake.output.items()), threads=snakemake.threads,
               checkpoint_s=snakemake.resources.get("checkpoint_s", 60))
