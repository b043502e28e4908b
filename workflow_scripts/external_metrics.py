from braindl.external import run_tables
from braindl.logs import to_log

with to_log(snakemake.log):
    p, o = snakemake.params, snakemake.output
    run_tables(p.runs, snakemake.input.get("internal"), p.n_boot, p.ci, o.metrics, o.summary)
