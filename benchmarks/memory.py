"""Peak memory of a 4K frame upscaled x2 on the CPU through the SuperResolution node (target: < 6 GB).

    python benchmarks/memory.py [--model fast-x2] [--precisions fp32 int8] [--threads N]

Each precision runs in a fresh subprocess that builds one 3840x2160 RGB frame (a real photo, resized;
for the "hdr" rows lifted by 4x so that its bright half goes above 1.0 and takes the highlight path),
renders it through the node exactly as a graph does (tiles chosen by the node, highlights split off,
alpha and other channels assembled), and reports its peak resident set size (ru_maxrss): the whole
process, torch and the model included. The baseline is the process just before rendering (imports,
model and the input frame); the output alone is 7680x4320x3 float32 = 380 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np, torch
    torch.set_num_threads(int(sys.argv[3]))
    from skimage import data
    from clarifx import kernels
    from clarifx.frame import SRGB, Frame
    from clarifx.nodes.restore import SuperResolution, _network

    model, precision, hdr = sys.argv[1], sys.argv[2], sys.argv[4] == "hdr"
    node = SuperResolution()
    params = {p.name: p.default for p in node.params} | {"model": model, "precision": precision, "device": "cpu"}
    small = data.astronaut().astype(np.float32) / 255
    pixels = np.clip(kernels.resample(small, (2160, 3840), filter="bicubic"), 0, 1) * (4.0 if hdr else 1.0)
    frame = Frame(np.ascontiguousarray(pixels), ("R", "G", "B"), SRGB)
    _network(model)
    mib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base = mib()
    start = time.perf_counter()
    out = node.render(params, 0, [{0: frame}])
    seconds = time.perf_counter() - start
    assert out.pixels.shape == (4320, 7680, 3), out.pixels.shape
    print(json.dumps(dict(peak=mib(), base=base, seconds=seconds, output=out.pixels.nbytes / 2**20)))
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fast-x2")
    parser.add_argument("--precisions", nargs="*", default=["fp32", "int8"])
    parser.add_argument("--hdr", action=argparse.BooleanOptionalAction, default=True,
                        help="also an fp32 frame with highlights above 1.0 (default: on)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    print(f"3840x2160 -> 7680x4320 through SuperResolution ({args.model}) on the CPU, {args.threads} threads")
    print(f"{'frame':<10}{'peak RSS':>11}{'before render':>15}{'output':>9}{'seconds':>9}   target < 6 GB")
    runs = [(p, "sdr") for p in args.precisions] + ([("fp32", "hdr")] if args.hdr else [])
    for precision, kind in runs:
        proc = subprocess.run([sys.executable, "-c", _CHILD, args.model, precision, str(args.threads), kind],
                              capture_output=True, text=True)
        label = precision + (" hdr" if kind == "hdr" else "")
        if proc.returncode != 0:
            print(f"{label:<10} failed: {proc.stderr.strip().splitlines()[-1]}")
            continue
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{label:<10}{m['peak'] / 1024:>8.2f} GiB{m['base'] / 1024:>11.2f} GiB{m['output']:>5.0f} MiB"
              f"{m['seconds']:>9.1f}   {'ok' if m['peak'] * 2**20 < 6e9 else 'OVER'}")


if __name__ == "__main__":
    main()
