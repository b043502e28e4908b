from braindl.crop import run_strip_and_crop
from braindl.logs import to_log

with to_log(snakemake.log):
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    mods = p.modalities
    run_strip_and_crop(
        {m: i[m] for m in mods},
        {m: i[f"{m}_mask"] for m in mods},
        {m: i[f"{m}_json"] for m in mods},
        {m: i[f"native_{m}_json"] for m in mods},
        {k: o[k] for k in o.keys()},
        snakemake.wildcards.subject,
        snakemake.wildcards.session,
        p.settings,
        aligned=p.aligned,
        dpi=p.dpi,
    )
