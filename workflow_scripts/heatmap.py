from braindl.heatmaps import RUN_INPUTS, RUN_OUTPUTS, run_heatmaps_of_runs
from braindl.logs import to_log

with to_log(snakemake.log):
    i, o, p, r = snakemake.input, snakemake.output, snakemake.params, snakemake.resources
    # batch sizes change no map: resources, not params (a new batch size reruns nothing)
    settings = {**p.settings, "batch_size": r.heatmap_batch, "occlusion_batch": r.occlusion_batch}
    # named inputs and outputs: one file per run, every list in the runs' order
    run_heatmaps_of_runs({k: i[k] for k in RUN_INPUTS}, {k: o[k] for k in RUN_OUTPUTS}, i.pack_json, p.spec,
                         settings, layout=p.layout, threads=snakemake.threads)
