# The msstudy stage's constants, paths, settings, checks and input functions (its rules: rules/msstudy.smk).
# ---- plan ------------------------------------------------------------------------------------------
MS_RUNS = msstudy.planned_runs(RESULTS, MSS, msstudy.ARMS, SPLIT_IDS, RUN_IDS) if MSS["enabled"] else []
MS_HEATMAPS = [dict(split=s, run=r, **msstudy.heatmap_paths(RESULTS, MSS, s, r)) for s, r in RUN_KEYS]
MS_TABLES = msstudy.table_paths(RESULTS, MSS)


def _ms_run_inputs(arm, split, run):
    files = {"split": (msstudy.pretrain_split_path(RESULTS, MSS, split) if arm == "pretrain"
                       else split_path(split, msstudy.TARGET_TASK))}
    if arm == "finetune":
        files["finetune"] = msstudy.run_paths(RESULTS, MSS, "pretrain", split, run)["model"]
    return files


def ms_train_inputs(wc):
    """An ms_train job's inputs: the pack, and per run (lists over the job's runs) its split and, for the
    fine-tuning arm, the pre-trained model it starts from."""
    pack = pack_paths(MSS["variant"], MSS["modality"])
    return {"data": pack["volumes"], "index": pack["index"],
            **over_train_runs(lambda s, r: _ms_run_inputs(wc.msarm, s, r), wc)}


def ms_heat_sources(wc):
    """What one heatmap job of the fine-tuned runs reads: lists over its runs (heatmaps.job_runs), the pack."""
    pack = pack_paths(MSS["variant"], MSS["modality"])
    return {**over_job_runs(lambda s, r: {**{k: msstudy.run_paths(RESULTS, MSS, "finetune", s, r)[k]
                                             for k in ("model", "predictions")},
                                          "data": pack["volumes"], "index": pack["index"]}, wc),
            "pack_json": pack["json"]}
# sessions with a native lesion mask of the study's modality: the synthetic cohort's lesion groups
MS_LESIONS = (msstudy.lesion_sessions(COHORT, synthetic.lesion_settings(config["synthetic"])["groups"],
                                      [p for p in session_pairs() if MSS["modality"] in session_mods(*p)])
              if MSS["enabled"] and SYNTHETIC else [])


def ms_registered(wc):
    """The registration outputs of a session in the MS study's variant (its lesion mask takes their chain)."""
    return reg_paths(MSS["variant"], session_mods(wc.subject, wc.session), wc.subject, wc.session)


def study_targets():
    """The tables and figures of the thesis' studies 5 and 2 that are switched on."""
    files = []
    if PIF["tasks"]:
        files += [*pifstudy.table_paths(RESULTS, PIF).values(), pifstudy.figure_path(RESULTS, PIF, config["figures"]["format"])]
    if MSS["enabled"]:
        files += msstudy.targets(RESULTS, MSS, config["figures"]["format"], bool(MS_LESIONS))
    return files
