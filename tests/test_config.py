"""The schema accepts the shipped configs and names the offending key otherwise."""

import copy

import pytest
import yaml
from snakemake.utils import validate

SCHEMA = "braindl/schemas/config.schema.yaml"


def _merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_default_config_is_valid(repo, config):
    validate(config, str(repo / SCHEMA))


def test_full_protocol_config_is_valid(repo, config):
    full = yaml.safe_load((repo / "configs/full_protocol.yaml").read_text())
    merged = _merge(config, full)
    validate(merged, str(repo / SCHEMA))
    assert merged["registration"]["resolution_mm"] == 1.0
    assert merged["crop"]["box"][merged["crop"]["preset"]["T1w"]]["shape"] == [96, 114, 96]
    assert merged["crop"]["box"][merged["crop"]["preset"]["pet"]]["shape"] == [79, 95, 60]
    assert (merged["splits"]["n_splits"], merged["splits"]["n_repeats"]) == (10, 5)


def test_laptop_config_is_the_laptop_study(repo, config):
    """configs/laptop.yaml: the laptop-sized study over the quick-start default, valid, and larger in every
    size it sets (the default is its shrunken copy)."""
    laptop = yaml.safe_load((repo / "configs/laptop.yaml").read_text())
    merged = _merge(config, laptop)
    validate(merged, str(repo / SCHEMA))
    from braindl import synthetic

    n = lambda c: int(synthetic.cohort_table(c["synthetic"])["n_sessions"].sum())  # noqa: E731
    assert sum(merged["synthetic"]["groups"].values()) == 36 and n(merged) > 4 * n(config)
    assert merged["training"]["max_epochs"] > config["training"]["max_epochs"]
    assert merged["splits"]["n_splits"] > config["splits"]["n_splits"]
    assert merged["dose"]["levels"] == [0.5, 1, 5, 10, 25, 50, 100] and len(config["dose"]["levels"]) < 7  # 002's
    assert sum(merged["registration"]["syn_iterations"]) > sum(config["registration"]["syn_iterations"])
    dt = merged["dose"]["training"]
    assert merged["dose"]["patients"] == max(dt["sizes"]) + dt["validation_patients"] + dt["test_patients"] == 13
    # the full protocol states the sizes it needs itself: the same merged over the default or the laptop study
    full = yaml.safe_load((repo / "configs/full_protocol.yaml").read_text())
    over_default, over_laptop = _merge(config, full), _merge(merged, full)
    for section, key in (("synthetic", "groups"), ("synthetic", "sessions"), ("splits", "test_fraction"),
                         ("dose", "patients"), ("dose", "angles"), ("dose", "patches_per_plane"),
                         ("training", "max_epochs"), ("external", "datasets"), ("transfer", "tasks"),
                         ("transfer", "roc_task"), ("transfer", "embedding_task"), ("evaluation", "bootstrap"),
                         ("heatmaps", "variants"), ("external", "variants"), ("registration", "syn_iterations"),
                         ("dose", "levels"), ("dose", "groups")):
        assert over_default[section][key] == over_laptop[section][key], (section, key)
    assert over_default["dose"]["training"] == over_laptop["dose"]["training"]


def test_every_stage_has_a_section(config):
    for section in ("dataset", "synthetic", "registration", "skullstrip", "crop", "mosaic", "dose",
                    "splits", "training", "evaluation", "heatmaps", "atlas", "figures"):
        assert section in config


@pytest.mark.parametrize(
    "section, key",
    [(None, "unknown_top"), ("synthetic", "sedd"), ("training", "learning_rat"), ("crop", "boxes")],
)
def test_unknown_key_is_rejected_by_name(repo, config, section, key):
    (config if section is None else config[section])[key] = 1
    with pytest.raises(Exception) as err:
        validate(config, str(repo / SCHEMA))
    assert key in str(err.value)


@pytest.mark.parametrize(
    "path, value",
    [(("synthetic", "seed"), "abc"), (("training", "batch_size"), 2.5), (("registration", "variants"), ["affine"]),
     (("dataset", "bids_dir"), 3), (("synthetic", "sessions"), [1])],
)
def test_wrong_type_names_the_key(repo, config, path, value):
    config[path[0]][path[1]] = value
    with pytest.raises(Exception) as err:
        validate(config, str(repo / SCHEMA))
    msg = str(err.value)
    assert f"['{path[0]}']['{path[1]}']" in msg, msg


def test_full_protocol_follows_the_papers_where_they_are_specific(repo):
    """Each setting with the sentence of its paper (PROTOCOLS.md; ../shared/seeds)."""
    full = yaml.safe_load((repo / "configs/full_protocol.yaml").read_text())
    tr, arms = full["training"], full["transfer"]["models"]
    # 004: "translation and flipping along the sagittal axis", no class weights
    assert tr["augment_shift_axis"] == "sagittal" and tr["augment_shift_voxels"] == 2 and tr["class_weights"] is False
    # 000: "we froze the pre-trained weights for convolution layers"
    assert arms["resnet18"]["freeze"] == "head_only" and arms["resnet18"]["weights"] == "imagenet"
    # 000's 3D CNN: early stopping when the validation loss changes by < 1e-4 for 10 epochs
    assert arms["cnn3d"] == {"early_stopping_patience": 10, "early_stopping_min_delta": 1.0e-4, "monitor": "val_loss"}
    # 001: Adam at lr 5e-7
    assert arms["densenet121x3"]["learning_rate"] == 5.0e-7
    # 004 studies 1-3 betas, and study 5's beta = 4
    assert full["heatmaps"]["lrp_betas"] == [0, 0.25, 0.5, 0.75, 1, 4]


def test_a_named_config_removes_an_entry_of_config_yaml_with_null(repo, config):
    """--configfile merges into config.yaml: `name: null` takes a model, layout, box, group or dataset out."""
    from braindl.planning import drop_removed

    merged = _merge(config, {"transfer": {"models": {"cnn3d": None}}, "mosaic": {"layouts": {"spect_001": None}},
                             "dose": {"groups": {"medium": None}}, "external": {"datasets": {"site2": None}}})
    removed = drop_removed(merged)
    assert removed == ["transfer.models.cnn3d", "mosaic.layouts.spect_001", "dose.groups.medium",
                       "external.datasets.site2"]
    assert list(merged["transfer"]["models"]) == [m for m in config["transfer"]["models"] if m != "cnn3d"]
    assert "spect_001" not in merged["mosaic"]["layouts"] and "pet_000" in merged["mosaic"]["layouts"]
    assert list(merged["dose"]["groups"]) == ["low", "high"] and merged["external"]["datasets"] == {}
    validate(merged, str(repo / SCHEMA))
    # without it the schema refuses the null model, naming it
    with pytest.raises(Exception, match="cnn3d"):
        validate(_merge(config, {"transfer": {"models": {"cnn3d": None}}}), str(repo / SCHEMA))
    assert drop_removed(copy.deepcopy(config)) == []


def test_profiles_size_every_rule_that_trains_or_explains(repo):
    """A rule that requests the training resources (a GPU when the config grants one) gets its GPU, threads
    and a runtime in profiles/slurm, and its threads in profiles/local: without them a cluster job runs
    with the 30-minute, 1-CPU defaults."""
    import re

    rules = set()
    for path in (repo / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=\s*rule \w+:)", path.read_text()):
            m = re.match(r"\s*rule (\w+):", block)
            if m and "**TRAIN_RESOURCES" in block:
                rules.add(m.group(1))
    assert {"train", "heatmap", "pif_search", "ms_train", "external_heatmap", "dose_train"} <= rules
    slurm = yaml.safe_load((repo / "profiles/slurm/config.yaml").read_text())
    local = yaml.safe_load((repo / "profiles/local/config.yaml").read_text())
    for rule in sorted(rules):
        res = slurm["set-resources"].get(rule, {})
        assert res.get("gpu") == 1 and res.get("runtime", 0) >= 240, rule
        assert slurm["set-threads"].get(rule) == res.get("cpus_per_task"), rule
        assert local["set-threads"].get(rule, 0) >= 2, rule
