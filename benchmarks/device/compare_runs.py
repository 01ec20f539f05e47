"""The same runs trained on two machines: how far apart are their numbers? (Reproducibility across hardware, e.g. a
lent GPU against this CPU: the same configurations, bf16 setting included, seeds and data.)

    python benchmarks/device/compare_runs.py RUNS_A RUNS_B [--data realdev] [--seeds 0] [--seed-pair 0:1]

--seed-pair A:B matches A's seed-A runs with B's seed-B runs instead (RUNS_B may be RUNS_A): the seed-to-seed
spread on one machine, the yardstick for the difference between machines. Runs are matched by their configuration
without the seed there, and otherwise without the fields that name a place or a device (data path, runs
folder, device, workers); each pair's held-out accuracy and balanced accuracy (metrics.json) and its per-image
test predictions (predictions.csv, matched by file name under the data folder) are compared. One JSON line: the
pairs, the mean and largest absolute difference in held-out accuracy, the mean signed difference (B - A), and the
share of test images (over all pairs' images) that both runs attribute to the same generator. Two runs of one folder
with the same configuration (two data paths that both match --data) are an error.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for _lib
from _lib import emit  # noqa: E402

PLACE = {"data", "runs", "device", "num_workers"}


def _runs(root: Path, data: str, seeds: set[int] | None, ignore: set[str] = frozenset()) -> dict:
    out = {}
    for cfg in sorted(root.glob("*/*/config.json")):
        if not (cfg.parent / "done").exists():
            continue
        c = json.loads(cfg.read_text())
        if data not in str(c.get("data", "")) or (seeds is not None and c.get("seed") not in seeds):
            continue
        key = json.dumps({k: v for k, v in c.items() if k not in PLACE | ignore}, sort_keys=True)
        if key in out:
            raise SystemExit(f"{out[key]} and {cfg.parent} have the same configuration: narrow --data")
        out[key] = cfg.parent
    return out


def _test_predictions(run: Path):
    import pandas as pd
    p = pd.read_csv(run / "predictions.csv", usecols=["path", "split", "pred"])
    p = p[p["split"] == "test"]
    return p.assign(key=p["path"].map(lambda s: "/".join(Path(s).parts[-3:]))).set_index("key")["pred"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--data", default="realdev", help="only runs whose data path contains this")
    ap.add_argument("--seeds", default="", help="only these seeds (comma-separated; empty: all)")
    ap.add_argument("--seed-pair", default="", help="A:B: A's seed-A runs against B's seed-B runs (the seed-to-seed "
                    "spread)")
    args = ap.parse_args()
    import numpy as np

    if args.seed_pair:
        sa, sb = (int(x) for x in args.seed_pair.split(":"))
        a, b = _runs(args.a, args.data, {sa}, {"seed"}), _runs(args.b, args.data, {sb}, {"seed"})
    else:
        seeds = {int(s) for s in args.seeds.split(",") if s} or None
        a, b = _runs(args.a, args.data, seeds), _runs(args.b, args.data, seeds)
    rows = []
    for key in sorted(a.keys() & b.keys()):
        ma = json.loads((a[key] / "metrics.json").read_text())
        mb = json.loads((b[key] / "metrics.json").read_text())
        pa, pb = _test_predictions(a[key]), _test_predictions(b[key])
        common = pa.index.intersection(pb.index)
        c = json.loads(key)
        rows.append({"technique": c["technique"], "stem": c.get("stem"), "heldout": "+".join(c["heldout"]),
                     "seed": c.get("seed", args.seed_pair),
                     "a": ma["heldout"]["accuracy"], "b": mb["heldout"]["accuracy"],
                     "a_bal": ma["heldout"].get("balanced_accuracy"), "b_bal": mb["heldout"].get("balanced_accuracy"),
                     "agree": float((pa[common] == pb[common]).mean()) if len(common) else float("nan"),
                     "images": int(len(common))})
    if not rows:
        raise SystemExit(f"no run of {args.a} matches one of {args.b} (data containing {args.data!r})")
    d = np.array([r["b"] - r["a"] for r in rows])
    db = np.array([r["b_bal"] - r["a_bal"] for r in rows if r["a_bal"] is not None and r["b_bal"] is not None])
    agree = sum(r["agree"] * r["images"] for r in rows if r["images"]) / max(1, sum(r["images"] for r in rows))
    emit("runs_across_machines", pairs=len(rows), only_in_a=len(a.keys() - b.keys()), only_in_b=len(b.keys() - a.keys()),
         mean_abs_accuracy_difference=round(float(np.abs(d).mean()), 4), max_abs=round(float(np.abs(d).max()), 4),
         mean_difference_b_minus_a=round(float(d.mean()), 4),
         mean_abs_balanced_difference=round(float(np.abs(db).mean()), 4) if len(db) else None,
         accuracy_correlation=(round(float(np.corrcoef([r["a"] for r in rows], [r["b"] for r in rows])[0, 1]), 3)
                               if len(rows) > 2 else None),
         same_prediction_share=round(float(agree), 3))
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
