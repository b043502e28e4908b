from braindl.logs import to_log
from braindl.pack import run_pack

with to_log(snakemake.log):
    run_pack(
        dict(zip([(f"sub-{sub}", ses) for sub, ses in snakemake.params.sessions], snakemake.input.volumes)),
        snakemake.input.manifest,
        snakemake.input.qc,
        snakemake.wildcards.mod,
        snakemake.wildcards.reg,
        snakemake.params.dtype,
        snakemake.output.volumes,
        snakemake.output.index,
        snakemake.output.json,
    )
