"""Cost of the robust objective, optimiser and data path, measured in one run.

Prints, on synthetic float32 features and the chosen device:

1. epoch time of the default RobustMLPClassifier (CVaR + AUC loss, SAM around
   AdamW) divided by the same network trained with BCE and plain AdamW
   (target on the CPU: <= 2.3);
2. epoch time of the default RobustMLPClassifier divided by a plain loop,
   written here, that trains the same MLP with the same loss and SAM step on
   rows already on the device (target on a GPU: <= 1.3): what skorch and the
   classifier's data path cost on top of the arithmetic;
3. prediction throughput of ``predict_proba`` in rows per second, from a
   NumPy array to probabilities (target on a GPU: >= 1,000,000);
4. time of the closed-form CVaR divided by the per-batch scalar search with
   scipy's ``fminbound`` that the paper's reference code uses (target <= 0.1),
   with the largest relative difference between their values (target <= 1e-5);
5. peak memory of the pairwise AUC loss (forward and backward) at the batch size.

``--precision`` sets the precision of the training arithmetic: ``fp32`` is
plain float32; ``tf32`` lets CUDA matrix products use TensorFloat-32 (float32
storage, 10-bit mantissa products; Ampere GPUs and later). Prediction always
computes in float64, so that a row's score does not depend on its batch.

Usage: python benchmarks/bench_classifier.py [--device cpu|cuda] [--precision fp32|tf32]
       [--n-samples 100000] [--epochs 2]
On a CPU, small sizes keep it short, e.g. ``--n-samples 5000``.
"""

import argparse
import contextlib
import subprocess
import sys
import time

import numpy as np
import torch
from scipy.optimize import fminbound

from sklearn_clipdet import RobustMLPClassifier
from sklearn_clipdet.losses import DetectorLoss, cvar_loss, pairwise_auc_loss
from sklearn_clipdet.modules import DetectorMLP
from sklearn_clipdet.optim import SAM, frozen_batchnorm_stats


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def classifier_epoch_seconds(X, y, epochs, **params):
    clf = RobustMLPClassifier(max_epochs=epochs, random_state=0, **params).fit(X, y)
    return min(clf.history[:, "dur"]), clf  # the fastest epoch: least disturbed by other load


def plain_loop_epoch_seconds(X, y, epochs, batch_size, device):
    """The default classifier's training step as a bare loop over rows on the device."""
    torch.manual_seed(0)
    rows = torch.from_numpy(X).to(device)
    targets = torch.from_numpy(y.astype(np.float32)).to(device)
    model = DetectorMLP(X.shape[1]).to(device).train()
    criterion = DetectorLoss()
    optimizer = SAM(model.parameters(), torch.optim.AdamW, rho=0.05, lr=1e-3,
                    betas=(0.9, 0.999), weight_decay=0.01)
    durations = []
    for _ in range(epochs):
        synchronize(device)
        start = time.perf_counter()
        order = torch.randperm(len(rows), device=device)
        for first in range(0, len(rows), batch_size):
            index = order[first : first + batch_size]
            batch, batch_targets = rows[index], targets[index]

            def closure(batch=batch, batch_targets=batch_targets):
                optimizer.zero_grad()
                frozen = frozen_batchnorm_stats(model) if optimizer.second_pass else None
                with frozen or contextlib.nullcontext():
                    loss = criterion(model(batch), batch_targets)
                loss.backward()
                return loss

            optimizer.step(closure)
        synchronize(device)
        durations.append(time.perf_counter() - start)
    return min(durations)


def prediction_rows_per_second(clf, X, repeats=3):
    clf.predict_proba(X[:10])  # first-call costs (kernels, allocator)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        clf.predict_proba(X)
        best = min(best, time.perf_counter() - start)
    return len(X) / best


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


def compare_cvar(n_batches, batch_size, alpha, device):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(n_batches, batch_size, generator=generator) * 3
    targets = (torch.rand(n_batches, batch_size, generator=generator) > 0.5).float()
    losses = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, targets, reduction="none"
    ).to(device)
    batches = list(losses.unbind(0))  # one per-sample loss vector per training batch

    def run(fn, repeats=5):
        best = float("inf")
        for _ in range(repeats):  # best of several passes: least disturbed by other load
            synchronize(device)
            start = time.perf_counter()
            values = torch.stack([fn(batch, alpha) for batch in batches])
            synchronize(device)
            best = min(best, time.perf_counter() - start)
        return best, values

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


def auc_peak_mib(batch_size, device):
    """Peak memory growth during one AUC loss: device memory on CUDA, else the resident
    size of a fresh process (Linux)."""
    if torch.device(device).type == "cuda":
        scores = torch.randn(batch_size, device=device, requires_grad=True)
        targets = (torch.rand(batch_size, device=device) > 0.5).float()
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        pairwise_auc_loss(scores, targets).backward()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE.format(n=batch_size)],
        check=True, capture_output=True, text=True,
    )
    return int(out.stdout.strip()) / 1024


def set_precision(precision, device):
    if precision == "tf32":
        if torch.device(device).type != "cuda":
            raise SystemExit("--precision tf32 applies to CUDA devices only.")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.backends.cuda.matmul.allow_tf32 = False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--precision", choices=["fp32", "tf32"], default="fp32",
                        help="precision of the training arithmetic (see the module doc)")
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--n-features", type=int, default=1536)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2048)
    args = parser.parse_args()
    device = args.device
    set_precision(args.precision, device)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n_samples, args.n_features)).astype(np.float32)
    y = (X[:, :8].sum(axis=1) + rng.normal(size=args.n_samples) > 0).astype(np.int64)
    name = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {device} ({name}), {torch.get_num_threads()} CPU "
          f"threads, {args.precision}, X {X.shape} float32, batch {args.batch_size}, "
          f"best of {args.epochs} epochs")

    common = dict(batch_size=args.batch_size, device=device)
    robust, clf = classifier_epoch_seconds(X, y, args.epochs, **common)
    plain_bce, _ = classifier_epoch_seconds(X, y, args.epochs, loss="bce", sam=False, **common)
    print(f"epoch time  CVaR+AUC+SAM {robust:8.3f} s   BCE+AdamW {plain_bce:8.3f} s   "
          f"ratio {robust / plain_bce:.2f} (CPU target <= 2.3)")

    loop = plain_loop_epoch_seconds(X, y, args.epochs, args.batch_size, device)
    print(f"epoch time  RobustMLPClassifier {robust:8.3f} s   plain device loop {loop:8.3f} s"
          f"   ratio {robust / loop:.2f} (GPU target <= 1.3)")

    rate = prediction_rows_per_second(clf, X)
    print(f"prediction  {rate:,.0f} rows/s (predict_proba on {len(X):,} rows; "
          f"GPU target >= 1,000,000)")

    n_batches = -(-args.n_samples // args.batch_size)
    closed_time, search_time, rel_diff = compare_cvar(n_batches, args.batch_size, 0.8, device)
    print(f"CVaR over {n_batches} batches  closed form {closed_time * 1e3:8.2f} ms   "
          f"fminbound {search_time * 1e3:8.2f} ms   ratio {closed_time / search_time:.4f} "
          f"(target <= 0.1)   max relative difference {rel_diff:.2e} (target <= 1e-5)")

    peak = auc_peak_mib(args.batch_size, device)
    print(f"pairwise AUC loss at batch {args.batch_size}: peak memory {peak:.1f} MiB "
          f"(forward + backward on {device}; one {args.batch_size}x{args.batch_size} float32 "
          f"pair matrix is {args.batch_size**2 * 4 / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
