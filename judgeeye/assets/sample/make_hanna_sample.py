"""Rebuild hanna_sample.csv: 300 HANNA stories, stratified by model, fixed seed.

Usage: python assets/sample/make_hanna_sample.py PATH/TO/hanna_reconstructed_per_annotator.csv

Every one of the 11 systems gets 300 // 11 = 27 stories (a seeded random draw per system);
the 3 remaining stories are drawn, with the same generator, from the stories not yet chosen.
Rows keep the source file's columns and are written in story_id order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20220824  # HANNA's initial release date
N = 300


def sample(df: pd.DataFrame, n: int = N, seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    models = sorted(df["model"].unique())
    per_model = n // len(models)
    chosen: list[int] = []
    for model in models:
        ids = np.sort(df.loc[df["model"] == model, "story_id"].to_numpy())
        chosen += rng.choice(ids, size=per_model, replace=False).tolist()
    rest = np.sort(df.loc[~df["story_id"].isin(chosen), "story_id"].to_numpy())
    chosen += rng.choice(rest, size=n - len(chosen), replace=False).tolist()
    return df[df["story_id"].isin(chosen)].sort_values("story_id").reset_index(drop=True)


def main(argv: list[str]) -> None:
    src = Path(argv[1]) if len(argv) > 1 else Path("../shared/data/hanna/hanna_reconstructed_per_annotator.csv")
    df = pd.read_csv(src)
    out = Path(__file__).with_name("hanna_sample.csv")
    sample(df).to_csv(out, index=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv)
