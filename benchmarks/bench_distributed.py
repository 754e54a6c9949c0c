"""Throughput of distributed featurization on a 2-worker dask LocalCluster vs one process.

Prints measured numbers only:

1. per-task overhead of the cluster: no-op tasks, and the extra time per partition of
   ``featurize`` when the same images are cut into many small partitions;
2. images/s of ``CLIPFeaturizer.transform`` in this process (torch on all cores) vs
   ``sklearn_clipdet.distributed.featurize`` on a LocalCluster of 2 worker processes with
   one thread each, on the same images, and their ratio.

The images are the playground JPEGs (real camera photos and generated images), repeated.
The model has the architecture of ``--model`` with random weights, written once to a
``local-dir:`` folder so that every worker loads the same weights (speed does not depend
on the values). Run from the repository root::

    python benchmarks/bench_distributed.py                    # about 4 minutes on 2 cores
    python benchmarks/bench_distributed.py --model tiny --n-images 120
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from _playground import cycle, playground_paths
from safetensors.torch import save_file

from sklearn_clipdet import CLIPFeaturizer
from sklearn_clipdet.distributed import featurize, read_features
from sklearn_clipdet.testing import write_tiny_model


def write_random_model(architecture, directory):
    """Save ``architecture`` with random weights as a ``local-dir:`` model; return its name."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = open_clip.create_model(architecture, pretrained=None)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(directory / "open_clip_model.safetensors"))
    config = {
        "model_cfg": open_clip.get_model_config(architecture),
        "preprocess_cfg": dict(open_clip.get_model_preprocess_cfg(model)),
    }
    (directory / "open_clip_config.json").write_text(json.dumps(config))
    return f"local-dir:{directory.resolve()}"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def _seconds(times):
    return "[" + ", ".join(f"{t:.2f}" for t in times) + "]"


def noop(x):
    return x


def bench_overhead(client, tiny_model, work, args):
    print("\n== 1. Per-task overhead of the 2-worker cluster ==")
    n_tasks = args.n_noop
    client.gather(client.map(noop, range(20), pure=False))  # warm the connections
    seconds, _ = timed(lambda: client.gather(client.map(noop, range(n_tasks), pure=False)))
    print(f"no-op tasks: {n_tasks} in {seconds:.3f} s = {1e3 * seconds / n_tasks:.2f} ms per task "
          "(submit + run + gather)")

    images = cycle(playground_paths("ai"), args.n_overhead_images)
    featurizer = CLIPFeaturizer(tiny_model, None, modalities="image", device="cpu")
    featurize(images[:4], featurizer, work / "warm", client=client, partition_size=2)
    big = len(images) // 2
    small = args.small_partition
    n_big, n_small = 2, -(-len(images) // small)
    t_big, _ = timed(featurize, images, featurizer, work / "big", client=client,
                     partition_size=big)
    t_small, _ = timed(featurize, images, featurizer, work / "small", client=client,
                       partition_size=small)
    per_partition = (t_small - t_big) / (n_small - n_big) * 2  # 2 workers run side by side
    print(f"featurize, tiny model, {len(images)} small images: {n_big} partitions of {big}: "
          f"{t_big:.2f} s; {n_small} partitions of {small}: {t_small:.2f} s")
    print(f"  overhead per partition, in worker time: {1e3 * per_partition:.1f} ms")

    start = time.perf_counter()
    again = featurize(images, featurizer, work / "small", client=client, partition_size=small)
    print(f"resume of a finished run ({again.n_partitions} partitions skipped): "
          f"{time.perf_counter() - start:.3f} s")


def bench_throughput(client, model, work, args):
    print(f"\n== 2. Throughput: one process vs 2-worker LocalCluster ({args.model}, "
          f"{args.n_images} images) ==")
    images = cycle(playground_paths(), args.n_images)
    featurizer = CLIPFeaturizer(model, None, modalities="image", device="cpu",
                                batch_size=args.batch_size)

    featurizer.fit(images).transform(images[:2])  # load the model in this process
    cold_s, result = timed(featurize, images, featurizer, work / "cold", client=client,
                           partition_size=args.partition_size)
    print(f"2 workers x 1 thread, first run (loads the model on each worker): {cold_s:.2f} s, "
          f"{len(images) / cold_s:.1f} img/s, {result.n_partitions} partitions of "
          f"{args.partition_size}")

    # Alternate the two, so that a change in the load of the machine hits both.
    single_times, cluster_times = [], []
    for repeat in range(args.repeats):
        seconds, expected = timed(featurizer.transform, images)
        single_times.append(seconds)
        seconds, result = timed(featurize, images, featurizer, work / f"warm-{repeat}",
                                client=client, partition_size=args.partition_size)
        cluster_times.append(seconds)
    single_s, warm_s = min(single_times), min(cluster_times)
    print(f"one process (torch threads: {torch.get_num_threads()}): best of "
          f"{_seconds(single_times)} s = {len(images) / single_s:.1f} img/s")
    print(f"2 workers x 1 thread, model loaded: best of {_seconds(cluster_times)} s = "
          f"{len(images) / warm_s:.1f} img/s")
    per_worker = {address: info["partitions"] for address, info in result.workers.items()}
    print(f"  partitions per worker: {sorted(per_worker.values())}")
    features = read_features(result.output).to_numpy()
    max_diff = float(np.abs(features - expected).max())
    print(f"  max |distributed - single process| feature difference: {max_diff:.2e}")
    print(f"ratio (cluster img/s / one process img/s): model loaded {single_s / warm_s:.2f}, "
          f"first run {single_s / cold_s:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32",
                        help="open_clip architecture (random weights), or 'tiny'")
    parser.add_argument("--n-images", type=int, default=240)
    parser.add_argument("--partition-size", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--n-noop", type=int, default=500)
    parser.add_argument("--n-overhead-images", type=int, default=240)
    parser.add_argument("--small-partition", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load}, torch {torch.__version__}, "
          f"open_clip {open_clip.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny_model = write_tiny_model(work / "tiny")
        model = tiny_model if args.model == "tiny" else write_random_model(args.model,
                                                                           work / "model")
        start = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            print(f"LocalCluster(n_workers=2, threads_per_worker=1) started in "
                  f"{time.perf_counter() - start:.1f} s")
            bench_overhead(client, tiny_model, work, args)
            bench_throughput(client, model, work, args)


if __name__ == "__main__":
    main()
