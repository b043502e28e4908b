from braindl.logs import to_log
from braindl.skullstrip import run_skullstrip

with to_log(snakemake.log):
    mods = snakemake.params.modalities
    run_skullstrip(
        {m: snakemake.input[m] for m in mods},
        {m: snakemake.input[f"{m}_mask"] for m in mods},
        {m: snakemake.input[f"{m}_json"] for m in mods},
        {m: snakemake.input[f"native_{m}_json"] for m in mods},
        {k: snakemake.output[k] for k in snakemake.output.keys()},
        snakemake.wildcards.subject,
        snakemake.wildcards.session,
        dpi=snakemake.params.dpi,
    )
