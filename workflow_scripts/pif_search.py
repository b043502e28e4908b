import braindl.training  # noqa: F401  torch and MONAI load here, before the timed library call (braindl.logs)
from braindl.logs import to_log
from braindl.pifstudy import run_searches

with to_log(snakemake.log):
    i, p = snakemake.input, snakemake.params
    run_searches(i.data, i.index, dict(zip(p.splits, i.splits)), snakemake.wildcards.task, p.runs,
                 dict(snakemake.output.items()), threads=snakemake.threads,
                 checkpoint_s=snakemake.resources.get("checkpoint_s", 60))
