"""Speed, agreement and memory of CLIPFeaturizer on the playground images, measured in one run.

Prints measured numbers only:

1. draft: reduced-size (draft) JPEG decoding vs a full decode, decode + preprocess of the
   camera photos: speed ratio, model-input difference, feature cosine (CPU);
2. e2e: end-to-end images/s from JPEG files vs the bare forward pass on inputs already on
   the device (targets: >= 0.9 on CPU with ViT-B-32 at batch 32, >= 0.6 on a GPU with
   ViT-L-14 fp16 at batch 256);
3. cosine: features of the fast path (on a GPU: nvJPEG decoding and tensor preprocessing)
   vs open_clip's own PIL preprocessing (draft_decode=False), same model and device: the
   minimum per-image cosine over the playground (target >= 0.999);
4. decode: decode + preprocess throughput without the model, camera photos and generated
   images apart: PIL on the CPU (reduced-size JPEG decoding, every core), and the batched
   tensor path (nvJPEG on a GPU; libjpeg-turbo at full size on the CPU);
5. text: captions/s of the text tower, tokenisation included;
6. int8: precision="int8" vs "fp32" (CPU only);
7. rss: peak RSS featurizing many image paths vs few (streaming, CPU);
8. cache: second transform vs first with cache_dir;
9. views: images/s of make_detector's default features (blocks at 1/2, 2/3 and 5/6 of the
   depth, views="resize+tiles") against the 0.2 default (one block, views="resize").

Weights are random (``pretrained=None``): speed does not depend on them. Run from the
repository root::

    python benchmarks/bench_featurizer.py            # CPU, everything, a few minutes on 2 cores
    python benchmarks/bench_featurizer.py --only e2e --repeats 5
    python benchmarks/bench_featurizer.py --device cuda --precision fp16 --model ViT-L-14 \\
        --batch-size 256 --n-images 1024 --only e2e,cosine,decode,text
"""

import argparse
import gc
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from _playground import cycle, playground_paths

from sklearn_clipdet import CLIPFeaturizer
from sklearn_clipdet._clip._backbone import load_backbone
from sklearn_clipdet._images._decoding import ImageDecoder, default_workers
from sklearn_clipdet._images._reading import DecodeOptions, decode_image, load_source
from sklearn_clipdet._images._tensors import decode_jpegs, inspect_jpeg
from sklearn_clipdet.testing import write_tiny_model

SECTIONS = ("draft", "e2e", "cosine", "decode", "text", "int8", "rss", "cache", "views")
CPU_ONLY = ("draft", "int8", "rss", "cache")


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def random_backbone(args, precision=None, device=None, seed=0):
    """The random-weight model the featurizer will use, loaded with a fixed seed."""
    torch.manual_seed(seed)  # open_clip initialises from torch's global generator
    return load_backbone(args.model, None, device=device or args.device,
                         precision=precision or args.precision)


def featurizer(args, **params):
    params = {"modalities": "image", "device": args.device, "precision": args.precision,
              "batch_size": args.batch_size, **params}
    return CLIPFeaturizer(args.model, None, **params).fit(None)


def bench_draft(args):
    print("\n== 1. Draft (reduced-size) JPEG decoding vs full decode, camera photos ==")
    backbone = random_backbone(args)
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
    f_full = backbone.encode_image(full).cpu().numpy()
    f_draft = backbone.encode_image(draft).cpu().numpy()
    between = cosine(f_full, np.roll(f_full, 1, axis=0))
    sizes = [_size(p) for p in paths]
    print(f"images: {len(paths)} camera photos, {min(min(s) for s in sizes)}-"
          f"{max(max(s) for s in sizes)} px a side; model input {backbone.image_size}")
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
    print(f"\n== 2. End to end from JPEG files vs bare forward, {args.model} {args.precision} on "
          f"{args.device}, batch {args.batch_size} ==")
    backbone = random_backbone(args)
    paths = cycle(playground_paths(), args.n_images)
    fast = featurizer(args)
    decoder = ImageDecoder(backbone, fast=True, max_image_pixels=None)
    inputs = torch.stack([decoder.decode(load_source(p)) for p in paths[:args.batch_size]])
    inputs = decoder.tensors.normalize(inputs.to(backbone.device), backbone.input_dtype)
    fast.transform(paths[:2 * args.batch_size])  # warm up: kernels, nvJPEG, thread pools

    layers = backbone.image_layers(fast.image_layers)  # the same features as the featurizer

    def bare():
        for start in range(0, len(paths), args.batch_size):
            n = min(args.batch_size, len(paths) - start)
            backbone.encode_image(inputs[:n], layers)
        synchronize(backbone.device)

    bare()  # warm up
    results = {"bare": [], "e2e": []}
    cpu = {"bare": [], "e2e": []}  # CPU seconds of this process: less sensitive to other load
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        for name, run in (("bare", bare), ("e2e", lambda: fast.transform(paths))):
            start = time.process_time()
            results[name].append(timed(run)[0])
            cpu[name].append(time.process_time() - start)
    t_bare, t_e2e = min(results["bare"]), min(results["e2e"])
    workers = default_workers()
    print(f"images: {len(paths)} JPEG files (playground camera photos + generated, cycled); "
          f"best of {args.repeats}; torch threads {torch.get_num_threads()}, decode workers "
          f"{workers}; features of image_layers={fast.image_layers!r} ({layers}) in both")
    print(f"bare forward on ready inputs: {len(paths) / t_bare:.2f} img/s  (all runs: "
          f"{', '.join(f'{len(paths) / t:.2f}' for t in results['bare'])})")
    print(f"featurizer from JPEG files:   {len(paths) / t_e2e:.2f} img/s  (all runs: "
          f"{', '.join(f'{len(paths) / t:.2f}' for t in results['e2e'])})")
    ratios = [b / e for b, e in zip(results["bare"], results["e2e"])]
    print(f"ratio end-to-end / bare: {t_bare / t_e2e:.3f} (best of each); per run: "
          f"{', '.join(f'{r:.3f}' for r in ratios)}")
    per_image = {name: 1000 * min(values) / len(paths) for name, values in cpu.items()}
    print(f"CPU time of this process per image: bare {per_image['bare']:.1f} ms, end-to-end "
          f"{per_image['e2e']:.1f} ms; ratio {per_image['bare'] / per_image['e2e']:.3f}")


def bench_cosine(args):
    print(f"\n== 3. Fast path vs open_clip's PIL preprocessing, {args.model} {args.precision} "
          f"on {args.device} ==")
    random_backbone(args)
    paths = playground_paths()
    fast = featurizer(args, batch_size=min(args.batch_size, 64)).transform(paths)
    exact = featurizer(args, batch_size=min(args.batch_size, 64),
                       draft_decode=False).transform(paths)
    cos = cosine(fast, exact)
    real = np.array(["/real/" in p for p in paths])
    path = "nvJPEG + tensor preprocessing" if args.device.startswith("cuda") else \
        "PIL draft decoding + tensor resizing"
    print(f"{len(paths)} playground images; fast path: {path}")
    print(f"cosine fast vs PIL: min {cos.min():.6f}, mean {cos.mean():.6f}; camera photos min "
          f"{cos[real].min():.6f}, generated min {cos[~real].min():.6f}")


def bench_decode(args):
    print("\n== 4. Decode + preprocess without the model ==")
    backbone = random_backbone(args)
    for kind, label in (("real", "camera photos"), ("ai", "generated images")):
        sources = [load_source(p) for p in cycle(playground_paths(kind), args.n_decode)]
        pil_all, pil_one = decode_with_pil(backbone, sources)
        tensor = decode_as_tensors(backbone, sources, args.batch_size)
        where = "nvJPEG on the GPU" if backbone.device.type == "cuda" else \
            "libjpeg-turbo at full size, one thread"
        print(f"{label} ({len(sources)}): PIL reduced-size decoding {pil_all:.1f} img/s on "
              f"{default_workers()} threads ({pil_one:.1f} img/s on one); batched tensor path "
              f"({where}) {tensor:.1f} img/s")


def decode_with_pil(backbone, sources):
    """img/s of the CPU fast path (what the featurizer's workers do) on every core, and on
    one."""
    decoder = ImageDecoder(backbone, fast=True, max_image_pixels=None)
    workers = default_workers()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(decoder.decode, sources[:workers]))  # warm up
        t_all, _ = timed(lambda: list(pool.map(decoder.decode, sources)))
    few = sources[:max(4, len(sources) // 8)]
    t_one, _ = timed(lambda: [decoder.decode(source) for source in few])
    return len(sources) / t_all, len(few) / t_one


def decode_as_tensors(backbone, sources, batch_size):
    """img/s of batched decode_jpegs + tensor preprocessing on the model's device."""
    tensors = ImageDecoder(backbone, fast=True, max_image_pixels=None).tensors
    headers = [inspect_jpeg(source, None) for source in sources]

    def run():
        for start in range(0, len(sources), batch_size):
            chunk = slice(start, start + batch_size)
            decoded = decode_jpegs(sources[chunk], headers[chunk], backbone.device,
                                   then=tensors.resize_crop_many)
            tensors.normalize(torch.stack(decoded), backbone.input_dtype)
        synchronize(backbone.device)

    run()  # warm up
    return len(sources) / timed(run)[0]


def bench_text(args):
    n = args.n_captions
    print(f"\n== 5. Text tower, {n} distinct captions, {args.model} {args.precision} on "
          f"{args.device} ==")
    random_backbone(args)
    words = ["a", "photo", "of", "red", "cat", "on", "the", "old", "wooden", "table", "near",
             "window", "in", "soft", "morning", "light"]
    rng = np.random.default_rng(0)
    captions = [" ".join(rng.choice(words, 12)) + f" number {i}" for i in range(n)]
    text = CLIPFeaturizer(args.model, None, modalities="text", device=args.device,
                          precision=args.precision, batch_size=args.batch_size).fit(captions)
    text.transform(captions[:256])  # warm up
    t, features = timed(text.transform, captions)
    tokenizer = text.load_backbone().tokenizer
    t_tokens, _ = timed(tokenizer, captions[:1024])
    print(f"{n / t:.0f} captions/s ({t:.2f} s); tokenisation alone {1024 / t_tokens:.0f} "
          f"captions/s; output {features.shape}")


def bench_int8(args):
    print(f"\n== 6. precision='int8' vs 'fp32' on CPU, {args.model} ==")
    paths = cycle(playground_paths(), args.n_images)
    fp32 = random_backbone(args, "fp32", "cpu")
    int8 = random_backbone(args, "int8", "cpu")
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
    print("\n== 7. Peak RSS, many vs few image paths (tiny model, one subprocess each) ==")
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
    print(f"\n== 8. Feature cache, {args.model}, second transform vs first ==")
    random_backbone(args, device="cpu")
    paths = cycle(playground_paths(), min(args.n_images, 60))
    featurizer = CLIPFeaturizer(args.model, None, modalities="image", device="cpu",
                                batch_size=args.batch_size, cache_dir=Path(tmp) / "cache")
    featurizer.fit(paths)
    t_first, first = timed(featurizer.transform, paths)
    t_second, second = timed(featurizer.transform, paths)
    assert np.array_equal(first, second)
    print(f"{len(paths)} distinct images: first {t_first:.2f} s (includes fingerprinting the "
          f"weights), second {t_second:.3f} s, speed-up {t_first / t_second:.1f}x")


def bench_views(args):
    print(f"\n== 9. Views, {args.model}: the 0.3 default features vs the 0.2 default ==")
    backbone = random_backbone(args)
    depth = len(backbone.model.visual.transformer.resblocks)
    paths = cycle(playground_paths(), min(args.n_images, 60))
    old = featurizer(args, image_layers=round(2 * depth / 3), views="resize")
    new = featurizer(args, views="resize+tiles")
    old.transform(paths[:4])  # warm up
    times = {"old": [], "new": []}
    for _ in range(args.repeats):
        for name, f in (("old", old), ("new", new)):
            seconds, features = timed(f.transform, paths)
            times[name].append(seconds)
            times[name + "_width"] = features.shape[1]
    t_old, t_new = min(times["old"]), min(times["new"])
    print(f"{len(paths)} playground JPEGs, batch {args.batch_size}, best of {args.repeats}:")
    print(f"  0.2 default (block {round(2 * depth / 3)}, resize): {len(paths) / t_old:.2f} img/s,"
          f" {times['old_width']} features")
    print(f"  0.3 default (blocks {list(new.load_backbone().image_layers('auto'))}, "
          f"resize+tiles): {len(paths) / t_new:.2f} img/s, {times['new_width']} features")
    print(f"  time per image: ratio {t_new / t_old:.2f} (new / old)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--n-images", type=int, default=128,
                        help="images for the end-to-end, int8 and cache sections")
    parser.add_argument("--n-decode", type=int, default=None,
                        help="images of each kind for the decode section (default: 2 batches)")
    parser.add_argument("--n-captions", type=int, default=None,
                        help="captions for the text section (default 8192 on a GPU, 512 on CPU)")
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
    on_gpu = torch.device(args.device).type == "cuda"
    args.n_decode = args.n_decode or 2 * args.batch_size
    args.n_captions = args.n_captions or (8192 if on_gpu else 512)
    sections = args.only.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose among {SECTIONS}")
    if on_gpu:
        skipped = [name for name in sections if name in CPU_ONLY]
        if skipped:
            print(f"(sections {skipped} measure the CPU; run them without --device cuda)")
        sections = [name for name in sections if name not in CPU_ONLY]
    device_name = torch.cuda.get_device_name(args.device) if on_gpu else "no GPU used"
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs ({default_workers()} usable), torch "
          f"threads {torch.get_num_threads()}; {device_name}")
    start = time.perf_counter()
    runners = {
        "draft": lambda tmp: bench_draft(args),
        "e2e": lambda tmp: bench_e2e(args),
        "cosine": lambda tmp: bench_cosine(args),
        "decode": lambda tmp: bench_decode(args),
        "text": lambda tmp: bench_text(args),
        "int8": lambda tmp: bench_int8(args),
        "rss": lambda tmp: bench_rss(args, tmp),
        "cache": lambda tmp: bench_cache(args, tmp),
        "views": lambda tmp: bench_views(args),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in SECTIONS:
            if name in sections:
                runners[name](tmp)
                gc.collect()
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
