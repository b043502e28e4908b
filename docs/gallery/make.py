"""Copy the README's gallery from a finished run of the default workflow, downscaled.

    python docs/gallery/make.py <run folder>      # the folder holding results/ of `snakemake --cores 2 all`
"""

import sys
from pathlib import Path

from PIL import Image

#: gallery name -> figure of the default run (results/figures/...)
FIGURES = {
    "variants.png": "task-CN_vs_AD_T1w_variants.png",
    "transfer.png": "transfer_task-CN_AD_DLB_pet_desc-syn_metrics.png",
    "heatmap.png": "heatmaps_task-CN_vs_AD_T1w_desc-linear_model-cnn3d_thesis_method-gradientxinput_statmap.png",
    "regions.png": "heatmaps_task-CN_vs_AD_T1w_desc-linear_model-cnn3d_thesis_method-lrpepsilon_regions.png",
    "dose_levels.png": "dose_levels.png",
    "external.png": "external-site2_task-CN_vs_AD_T1w.png",
}
WIDTH = 800


def main(run: Path) -> None:
    out = Path(__file__).resolve().parent
    for name, fig in FIGURES.items():
        img = Image.open(run / "results" / "figures" / fig).convert("RGB")
        if img.width > WIDTH:
            img = img.resize((WIDTH, round(img.height * WIDTH / img.width)), Image.LANCZOS)
        img.save(out / name, optimize=True)
        print(f"{name}: {fig} {img.width}x{img.height}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
