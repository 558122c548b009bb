"""Stand-in for your training job in the CI examples: writes a model, its training
matrix (for the drift reference profile) and a labelled holdout for the gates.

    python infra/ci/train_example.py --out build/ [--seed 7] [--rows 20000]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from driftline.inference import SyntheticFeatures, train_logistic


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=16)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    trained = train_logistic(n_features=args.features, n_samples=args.rows, seed=args.seed)
    (args.out / "model.onnx").write_bytes(trained.onnx_bytes)
    generator = SyntheticFeatures(args.features, seed=args.seed)
    training, _ = generator.sample(args.rows)  # the rows train_logistic used
    np.save(args.out / "training.npy", training)
    holdout, labels = generator.sample(5_000)  # rows the model has not seen
    with open(args.out / "holdout.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*generator.feature_names, "label"])
        for row, label in zip(holdout, labels, strict=True):
            writer.writerow([*map(float, row), int(label)])
    print(f"wrote model.onnx, training.npy, holdout.csv to {args.out}")
    return args.out


if __name__ == "__main__":
    main()
