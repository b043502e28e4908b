from braindl.inputs import write_scans
from braindl.logs import to_log

with to_log(snakemake.log):
    write_scans(snakemake.params.scans, snakemake.output[0], digest=snakemake.params.get("data"))
