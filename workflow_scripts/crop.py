from braindl.crop import run_crop
from braindl.logs import to_log

with to_log(snakemake.log):
    mods = snakemake.params.modalities
    run_crop(
        snakemake.params.settings,
        {m: snakemake.input[m] for m in mods},
        {m: snakemake.input[f"{m}_mask"] for m in mods},
        {k: snakemake.output[k] for k in snakemake.output.keys()},
        aligned=snakemake.params.aligned,
    )
