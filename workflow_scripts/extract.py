from braindl.extraction import run_extraction
from braindl.logs import to_log

with to_log(snakemake.log):
    run_extraction(
        snakemake.params.settings["skullstrip"],
        snakemake.params.settings["registration"],
        {m: snakemake.input[m] for m in snakemake.params.modalities},
        {k: snakemake.output[k] for k in snakemake.output.keys()},
        threads=snakemake.threads,
    )
