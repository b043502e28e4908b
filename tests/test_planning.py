"""braindl.planning: what jobs exist, with which settings, without Snakemake or torch."""

import sys
import zlib

from braindl import planning


def test_planning_imports_neither_torch_nor_snakemake():
    import subprocess

    code = ("import sys; sys.modules['torch'] = None; sys.modules['snakemake'] = None; "
            "import braindl.planning as p; print(len(p.NAMED_DICTS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "5", out.stderr


def test_dose_runs_are_folds_plus_the_ensemble_on_fold_0(default_config):
    t = {**default_config["dose"]["training"], "models": ["resnet18", "densenet121"], "regimes": ["head_only"],
         "sizes": [1, 4], "folds": 3, "ensemble_runs": 5}
    runs = planning.dose_runs(t)
    assert len(runs) == 2 * 1 * 2 * (3 + 5 - 1)
    first = [r for r in runs if r["model"] == "resnet18" and r["n"] == 1]
    assert [(r["fold"], r["run"]) for r in first] == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 0), (2, 0)]
    assert planning.dose_runs(t, enabled=False) == []


def test_dose_seeds_are_per_scan_and_stable():
    a = planning.dose_seed(0, "001", "01")
    assert a == zlib.crc32(b"001_01") % 100000
    assert planning.dose_seed(5, "001", "01") == a + 5
    assert planning.dose_seed(0, "001", "01", "10") != a != planning.dose_seed(0, "002", "01")


def test_dose_training_needs_its_patients(default_config):
    t = {**default_config["dose"]["training"], "sizes": [1, 8], "validation_patients": 2, "test_patients": 3}
    assert planning.dose_training_problems(13, t) == []
    assert planning.dose_training_problems(12, t) == [
        "12 dose patients, but test_patients + validation_patients + max(sizes) = 13"]
    s = planning.dose_train_settings(default_config["dose"], "resnet18", "head_only", "cpu")
    assert s["max_epochs"] == default_config["dose"]["training"]["max_epochs"] and s["device"] == "cpu"
    assert s["early_stopping_patience"] == default_config["dose"]["training"]["patience"]
