"""Cost of the robust objective and optimiser, measured in one run.

Prints three measurements on synthetic float32 features:

1. epoch time of the default RobustMLPClassifier (CVaR + AUC loss, SAM around
   AdamW) divided by the same network trained with BCE and plain AdamW
   (target <= 2.3);
2. time of the closed-form CVaR divided by the per-batch scalar search with
   scipy's ``fminbound`` that the paper's reference code uses (target <= 0.1),
   with the largest relative difference between their values (target <= 1e-5);
3. peak memory of the pairwise AUC loss (forward and backward) at batch 2048.

Usage: python benchmarks/bench_classifier.py [--n-samples 100000] [--epochs 2]
"""

import argparse
import subprocess
import sys
import time

import numpy as np
import torch
from scipy.optimize import fminbound

from sklearn_clipdet import RobustMLPClassifier
from sklearn_clipdet.losses import cvar_loss


def epoch_seconds(X, y, epochs, **params):
    clf = RobustMLPClassifier(max_epochs=epochs, random_state=0, **params).fit(X, y)
    durations = clf.history[:, "dur"]
    return min(durations)  # the fastest epoch: least disturbed by other load


def fminbound_cvar(losses, alpha):
    """CVaR as the paper's reference code computes it (train.py of its public repository).

    The objective is evaluated on the loss tensor and read back with ``.item()``
    at every step of scipy's scalar search, over the bracket [min - 1000, max].
    """

    def objective(lam):
        return lam + (1.0 / alpha) * torch.relu(losses - lam).mean().item()

    values = losses.detach().cpu().numpy()
    lam = fminbound(objective, values.min() - 1000.0, values.max())
    return lam + (1.0 / alpha) * torch.relu(losses - lam).mean()


def compare_cvar(n_batches, batch_size, alpha):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(n_batches, batch_size, generator=generator) * 3
    targets = (torch.rand(n_batches, batch_size, generator=generator) > 0.5).float()
    losses = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, targets, reduction="none"
    )
    batches = list(losses.unbind(0))  # one per-sample loss vector per training batch

    def run(fn, repeats=5):
        best = float("inf")
        for _ in range(repeats):  # best of several passes: least disturbed by other load
            start = time.perf_counter()
            values = [fn(batch, alpha) for batch in batches]
            best = min(best, time.perf_counter() - start)
        return best, torch.stack(values)

    closed_time, closed = run(cvar_loss)
    search_time, searched = run(fminbound_cvar)
    rel_diff = ((closed - searched).abs() / searched.abs()).max().item()
    return closed_time, search_time, rel_diff


_MEMORY_PROBE = """
import torch
from sklearn_clipdet.losses import pairwise_auc_loss

def status_kib(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))

scores = torch.randn({n}, requires_grad=True)
targets = (torch.rand({n}) > 0.5).float()
pairwise_auc_loss(scores[:8], targets[:8]).backward()  # load kernels before measuring
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak resident size (VmHWM) to the current size
before = status_kib("VmRSS")
pairwise_auc_loss(scores, targets).backward()
print(status_kib("VmHWM") - before)
"""


def auc_peak_kib(batch_size):
    """Peak resident-memory growth of a fresh process during one AUC loss (Linux)."""
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE.format(n=batch_size)],
        check=True, capture_output=True, text=True,
    )
    return int(out.stdout.strip())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--n-features", type=int, default=1536)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2048)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n_samples, args.n_features)).astype(np.float32)
    y = (X[:, :8].sum(axis=1) + rng.normal(size=args.n_samples) > 0).astype(np.int64)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"X {X.shape} float32, batch {args.batch_size}, best of {args.epochs} epochs")

    robust = epoch_seconds(X, y, args.epochs, batch_size=args.batch_size)
    plain = epoch_seconds(X, y, args.epochs, batch_size=args.batch_size, loss="bce", sam=False)
    print(f"epoch time  CVaR+AUC+SAM {robust:8.2f} s   BCE+AdamW {plain:8.2f} s   "
          f"ratio {robust / plain:.2f} (target <= 2.3)")

    n_batches = -(-args.n_samples // args.batch_size)
    closed_time, search_time, rel_diff = compare_cvar(n_batches, args.batch_size, alpha=0.8)
    print(f"CVaR over {n_batches} batches  closed form {closed_time * 1e3:8.2f} ms   "
          f"fminbound {search_time * 1e3:8.2f} ms   ratio {closed_time / search_time:.4f} "
          f"(target <= 0.1)   max relative difference {rel_diff:.2e} (target <= 1e-5)")

    peak = auc_peak_kib(args.batch_size)
    print(f"pairwise AUC loss at batch {args.batch_size}: peak memory "
          f"{peak / 1024:.1f} MiB (forward + backward, fresh process; one "
          f"{args.batch_size}x{args.batch_size} float32 pair matrix is "
          f"{args.batch_size**2 * 4 / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
