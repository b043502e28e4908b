from braindl.heatmaps import run_heatmaps
from braindl.logs import to_log

with to_log(snakemake.log):
    i, o, p, r = snakemake.input, snakemake.output, snakemake.params, snakemake.resources
    # batch sizes change no map: resources, not params (a new batch size reruns nothing)
    settings = {**p.settings, "batch_size": r.heatmap_batch, "occlusion_batch": r.occlusion_batch}
    run_heatmaps(i.model, i.predictions, i.data, i.index, i.pack_json, p.spec, settings, o.heatmaps, o.index,
                 o.json, layout=p.layout, threads=snakemake.threads)
