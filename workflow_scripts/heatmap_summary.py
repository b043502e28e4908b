from braindl.atlas import SUMMARY_OUTPUTS, run_summary
from braindl.logs import to_log

with to_log(snakemake.log):
    i, p = snakemake.input, snakemake.params
    run_summary(p.runs, p.target, p.control, p.atlas, i.pack, i.pack_index, i.pack_json,
                {k: snakemake.output[k] for k in SUMMARY_OUTPUTS}, convention=p.convention)
