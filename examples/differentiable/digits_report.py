"""The digit demo's table and curves: every method at one N, a few seeds, one file each.

    PYTHONPATH=src python examples/differentiable/digits_report.py --digits 1 --out docs/digits

Writes ``results-N<n>.json`` (every run with its curve; the runs of methods not asked for
this time are kept) and ``curves-N<n>.png`` (held-out
digit and sum accuracy by epoch, the mean over seeds), and prints the table's rows (mean
and range over the seeds). At N = 2 the sums are also measured at N = 4 and 15
(generalisation). The computer's memo (``column.Memo``) is read from or written to
``digits.MEMO``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from statistics import mean

import torch

sys.path.insert(0, str(Path(__file__).parent))

from digits import MEMO, METHODS, train  # noqa: E402

GENERALISE = {2: (4, 15)}
TABLE_HEAD = ("| N | method | digit acc. (held out) | sum acc. | training s | ceiling p^(2N) "
              "| sum acc. at N=4 / 15 (trained at 2) |\n|---|---|---|---|---|---|---|")


def plot(runs: list[dict], n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        epochs = [row["epoch"] for row in mine[0]["curve"]]
        for ax, key in zip(axes, ("digit_acc", f"sum_acc_{n}"), strict=True):
            ys = [mean(r["curve"][i][key] for r in mine) for i in range(len(epochs))]
            ax.plot(epochs, [100 * y for y in ys], label=method)
    axes[0].set_title(f"held-out digit accuracy (N = {n})")
    axes[1].set_title(f"held-out sum accuracy (N = {n})")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def spread(values: list[float]) -> str:
    return f"{100 * mean(values):.1f} ({100 * min(values):.1f}-{100 * max(values):.1f})"


def rows(runs: list[dict], n: int) -> list[str]:
    sup = [r["digit_acc"] for r in runs if r["method"] == "supervised"]
    ceiling = [p ** (2 * n) for p in sup]
    out = []
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        extra = " / ".join(spread([r[f"sum_acc_{m}"] for r in mine])
                           for m in GENERALISE.get(n, ()))
        out.append(f"| {n} | {method} | {spread([r['digit_acc'] for r in mine])} | "
                   f"{spread([r[f'sum_acc_{n}'] for r in mine])} | "
                   f"{mean(r['train_seconds'] for r in mine):.0f} | "
                   f"{spread(ceiling) if ceiling else ''} | {extra} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int)
    parser.add_argument("--table", action="store_true",
                        help="only print the whole table from the results files in --out")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--estimator", default="sample")
    parser.add_argument("--score", type=float, default=0.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--pathwise", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("docs/digits"))
    a = parser.parse_args()
    if a.table:
        print(TABLE_HEAD)
        for path in sorted(a.out.glob("results-N*.json"), key=lambda p: int(p.stem[9:])):
            runs = json.loads(path.read_text())
            print("\n".join(rows(runs, runs[0]["digits"])))
        return
    if a.digits is None:
        sys.exit("digits_report: --digits N (or --table)")
    torch.set_num_threads(1)
    memo = None
    if "computer" in a.methods:
        from column import Column, Memo
        memo = Memo(Column(), MEMO, log=print)
        if not memo.exact:
            sys.exit("digits_report: the transformer's column trace is not exact")
    n = a.digits
    runs, start = [], time.time()
    for method in a.methods:
        for seed in a.seeds:
            result = train(method, n, a.epochs, seed=seed, estimator=a.estimator,
                           score=a.score, temperature=a.temperature, pathwise=a.pathwise,
                           test_digits=GENERALISE.get(n, ()), memo=memo, log=lambda s: None)
            print(json.dumps({k: v for k, v in result.items() if k != "curve"}), flush=True)
            runs.append(result)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"results-N{n}.json"
    if path.exists():  # keep the other methods' runs from an earlier invocation
        runs += [r for r in json.loads(path.read_text()) if r["method"] not in a.methods]
    path.write_text(json.dumps(runs, indent=1) + "\n")
    plot(runs, n, a.out / f"curves-N{n}.png")
    print("\n".join(rows(runs, n)))
    print(f"total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
