"""Speed and memory of CLIPFeaturizer on the playground images.

Prints measured numbers only:

1. reduced-size (draft) JPEG decoding vs a full decode, decode + preprocess of the
   real photos: speed ratio, model-input difference, feature cosine;
2. end-to-end images/s from JPEG files vs the bare forward pass on ready tensors;
3. precision="int8" vs "fp32": speed-up and minimum cosine;
4. peak RSS featurizing many image paths vs few (streaming);
5. feature cache: second transform vs first.

Weights are random (``pretrained=None``): speed does not depend on them. Run from
the repository root::

    python benchmarks/bench_featurizer.py            # everything, a few minutes on 2 cores
    python benchmarks/bench_featurizer.py --n-images 32 --rss-large 500 --only e2e,cache
"""

import argparse
import gc
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _playground import cycle, playground_paths

from sklearn_clipdet import CLIPFeaturizer
from sklearn_clipdet._backbone import load_backbone
from sklearn_clipdet._images import DecodeOptions, decode_image, load_source
from sklearn_clipdet.testing import write_tiny_model

SECTIONS = ("draft", "e2e", "int8", "rss", "cache")


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def random_backbone(model_name, precision="fp32", seed=0):
    """The random-weight model the featurizer will use, loaded with a fixed seed."""
    torch.manual_seed(seed)  # open_clip initialises from torch's global generator
    return load_backbone(model_name, None, device="cpu", precision=precision)


def bench_draft(args):
    print("\n== 1. Draft (reduced-size) JPEG decoding vs full decode, real photos ==")
    backbone = random_backbone(args.model)
    paths = playground_paths("real")
    sources = [load_source(p) for p in paths]
    target = dict(target_size=backbone.image_size,
                  resize_mode=backbone.preprocess_cfg["resize_mode"])

    def prepare(draft):
        options = DecodeOptions(draft=draft, **target)
        return torch.stack([backbone.preprocess_image(decode_image(s, options)) for s in sources])

    prepare(True)  # warm up
    t_full, full = min((timed(prepare, False) for _ in range(args.repeats)), key=lambda r: r[0])
    t_draft, draft = min((timed(prepare, True) for _ in range(args.repeats)), key=lambda r: r[0])
    # Yardstick: the same full decode, resized in two steps (to 2x the target, then as usual).
    two_step = []
    for source in sources:
        image = decode_image(source, DecodeOptions(draft=False, **target))
        scale = 2 * max(backbone.image_size) / min(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)),
                                 resample=3)
        two_step.append(backbone.preprocess_image(image))
    two_step = torch.stack(two_step)
    with torch.inference_mode():
        f_full = backbone.encode_image(full).numpy()
        f_draft = backbone.encode_image(draft).numpy()
    between = cosine(f_full, np.roll(f_full, 1, axis=0))
    print(f"images: {len(paths)} real photos, {min(s for p in paths for s in _size(p))}-"
          f"{max(s for p in paths for s in _size(p))} px a side; model input {backbone.image_size}")
    print(f"full decode + preprocess:  {t_full:.3f} s  ({len(paths) / t_full:.1f} img/s)")
    print(f"draft decode + preprocess: {t_draft:.3f} s  ({len(paths) / t_draft:.1f} img/s)")
    print(f"speed ratio draft/full: {t_full / t_draft:.2f}x")
    print(f"model input |draft - full|: max {(draft - full).abs().max():.4f}, "
          f"mean {(draft - full).abs().mean():.5f}")
    print(f"yardstick, two-step resize of the full decode |two-step - full|: max "
          f"{(two_step - full).abs().max():.4f}, mean {(two_step - full).abs().mean():.5f}")
    cos = cosine(f_draft, f_full)
    print(f"feature cosine draft vs full ({args.model}, random weights): min {cos.min():.6f}, "
          f"mean {cos.mean():.6f}; cosine between different images: median "
          f"{np.median(between):.6f}")


def _size(path):
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def bench_e2e(args):
    print(f"\n== 2. End to end from JPEG files vs bare forward, {args.model}, batch "
          f"{args.batch_size} ==")
    backbone = random_backbone(args.model)
    paths = cycle(playground_paths(), args.n_images)
    ready = torch.stack([backbone.preprocess_image(decode_image(load_source(p)))
                         for p in paths[:args.batch_size]])
    featurizer = CLIPFeaturizer(args.model, None, modalities="image", batch_size=args.batch_size,
                                device="cpu").fit(paths)
    backbone.encode_image(ready)  # warm up

    def bare():
        for start in range(0, len(paths), args.batch_size):
            n = min(args.batch_size, len(paths) - start)
            backbone.encode_image(ready[:n])

    results = {"bare": [], "e2e": []}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        results["bare"].append(timed(bare)[0])
        results["e2e"].append(timed(featurizer.transform, paths)[0])
    t_bare, t_e2e = min(results["bare"]), min(results["e2e"])
    print(f"images: {len(paths)} JPEG files (playground real + ai, cycled); best of "
          f"{args.repeats}; torch threads {torch.get_num_threads()}")
    print(f"bare forward on ready tensors: {len(paths) / t_bare:.2f} img/s")
    print(f"featurizer from JPEG files:    {len(paths) / t_e2e:.2f} img/s")
    print(f"ratio end-to-end / bare: {t_bare / t_e2e:.3f}")


def bench_int8(args):
    print(f"\n== 3. precision='int8' vs 'fp32' on CPU, {args.model} ==")
    paths = cycle(playground_paths(), args.n_images)
    fp32 = random_backbone(args.model, "fp32")
    int8 = random_backbone(args.model, "int8")
    pixels = torch.stack([fp32.preprocess_image(decode_image(load_source(p), DecodeOptions(
        target_size=fp32.image_size))) for p in paths])
    tokens = fp32.tokenizer([f"a photo number {i} of something" for i in range(len(paths))])

    def run(backbone):
        images = np.concatenate([backbone.encode_image(pixels[i:i + args.batch_size]).numpy()
                                 for i in range(0, len(pixels), args.batch_size)])
        texts = np.concatenate([backbone.encode_text(tokens[i:i + args.batch_size]).numpy()
                                for i in range(0, len(tokens), args.batch_size)])
        return images, texts

    run(fp32), run(int8)  # warm up
    times = {"fp32": [], "int8": []}
    for _ in range(args.repeats):
        t, (img32, txt32) = timed(run, fp32)
        times["fp32"].append(t)
        t, (img8, txt8) = timed(run, int8)
        times["int8"].append(t)
    t32, t8 = min(times["fp32"]), min(times["int8"])
    print(f"{len(paths)} images + {len(paths)} captions, batch {args.batch_size}, best of "
          f"{args.repeats}: fp32 {t32:.2f} s, int8 {t8:.2f} s, speed-up {t32 / t8:.2f}x")
    print(f"cosine int8 vs fp32: image min {cosine(img8, img32).min():.5f} "
          f"(mean {cosine(img8, img32).mean():.5f}), text min {cosine(txt8, txt32).min():.5f}")


def peak_rss_mib():
    """Peak resident memory of this process in MiB.

    Reads VmHWM on Linux: ``ru_maxrss`` would include the parent's memory, which a
    fork + exec carries over.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(n_paths, model_name):
    """Featurize n_paths paths; print peak RSS (MiB) before and after (run in a subprocess)."""
    paths = cycle(playground_paths(), n_paths)
    featurizer = CLIPFeaturizer(model_name, modalities="image", device="cpu").fit(paths)
    featurizer.transform(playground_paths("real")[:4])  # load the model, decode a few photos
    baseline = peak_rss_mib()
    features = featurizer.transform(paths)
    assert features.shape[0] == n_paths and np.isfinite(features).all()
    print(baseline, peak_rss_mib())


def bench_rss(args, tmp):
    print("\n== 4. Peak RSS, many vs few image paths (tiny model, one subprocess each) ==")
    model_name = write_tiny_model(Path(tmp) / "tiny")
    peaks = {}
    for n in (args.rss_small, args.rss_large):
        t, out = timed(subprocess.run, [sys.executable, __file__, "--rss-child", str(n),
                                        model_name], capture_output=True, text=True, check=True)
        baseline, peaks[n] = map(float, out.stdout.strip().splitlines()[-1].split())
        print(f"{n:5d} paths: peak RSS {peaks[n]:.0f} MiB, of which {peaks[n] - baseline:.0f} MiB "
              f"above the peak after loading the model and 4 photos ({t:.1f} s)")
    print(f"ratio {args.rss_large} / {args.rss_small}: "
          f"{peaks[args.rss_large] / peaks[args.rss_small]:.3f}")


def bench_cache(args, tmp):
    print(f"\n== 5. Feature cache, {args.model}, second transform vs first ==")
    random_backbone(args.model)
    paths = cycle(playground_paths(), min(args.n_images, 60))
    featurizer = CLIPFeaturizer(args.model, None, modalities="image", device="cpu",
                                batch_size=args.batch_size, cache_dir=Path(tmp) / "cache")
    featurizer.fit(paths)
    t_first, first = timed(featurizer.transform, paths)
    t_second, second = timed(featurizer.transform, paths)
    assert np.array_equal(first, second)
    print(f"{len(paths)} distinct images: first {t_first:.2f} s (includes fingerprinting the "
          f"weights), second {t_second:.3f} s, speed-up {t_first / t_second:.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--n-images", type=int, default=128,
                        help="images for the end-to-end, int8 and cache sections")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-small", type=int, default=200)
    parser.add_argument("--rss-large", type=int, default=2000)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections among {SECTIONS}")
    parser.add_argument("--rss-child", nargs=2, metavar=("N", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(int(args.rss_child[0]), args.rss_child[1])
        return
    sections = args.only.split(",")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}")
    start = time.perf_counter()
    runners = {
        "draft": lambda tmp: bench_draft(args),
        "e2e": lambda tmp: bench_e2e(args),
        "int8": lambda tmp: bench_int8(args),
        "rss": lambda tmp: bench_rss(args, tmp),
        "cache": lambda tmp: bench_cache(args, tmp),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in SECTIONS:
            if name in sections:
                runners[name](tmp)
                gc.collect()
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
