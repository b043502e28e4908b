from braindl.logs import to_log
from braindl.quality import train_quality

with to_log(snakemake.log):
    train_quality(
        dict(zip(map(tuple, snakemake.params.patch_keys), snakemake.input.patches)),
        snakemake.input.scores,
        snakemake.params.fold,
        int(snakemake.wildcards.n),
        snakemake.params.settings,
        int(snakemake.wildcards.run),
        {k: snakemake.output[k] for k in ("predictions", "history", "summary")},
        snakemake.params.state_dir,
        threads=snakemake.threads,
        checkpoint_s=snakemake.resources.get("checkpoint_s", 60),
    )
