"""Forward-pass time of candidate denoiser networks at the sizes restore uses, fp32 vs bf16.

    .venv/bin/python bench/bench_denoiser.py [--threads 2] [--repeats 5]

Run on an idle machine: another busy process makes CPU timings 10-20x slower.
"""

from __future__ import annotations

import argparse
import time

import torch

from restore.device import autocast
from restore.nets import UNetConfig, UNetDenoiser
from restore.nets.unet import count_parameters

CANDIDATES = {
    "2D (32,64,64)": {"spatial_dims": 2, "channels": (32, 64, 64), "attention_levels": (False, False, False)},
    "2D (32,64,128)+attn": {"spatial_dims": 2, "channels": (32, 64, 128), "attention_levels": (False, False, True),
                            "num_head_channels": 32},
    "3D (16,32,64)": {"spatial_dims": 3, "channels": (16, 32, 64), "attention_levels": (False, False, False)},
}
SIZES = {  # name -> (candidate kinds, data shape, condition channels)
    "MRI slice 224x192, 2.5D (6 cond)": (2, (1, 1, 224, 192), 6),
    "MRI batch 8 x 224x192 (6 cond)": (2, (8, 1, 224, 192), 6),
    "audio STFT chunk 256x512 (2 cond)": (2, (1, 2, 256, 512), 2),
    "MRI 3D patch 64^3 (1 cond)": (3, (1, 1, 64, 64, 64), 1),
}


def time_forward(net: UNetDenoiser, shape, cond_ch: int, bf16: bool, repeats: int) -> float:
    x = torch.randn(shape)
    cond = torch.randn(shape[0], cond_ch, *shape[2:])
    t = torch.full((shape[0],), 50)
    with torch.no_grad(), autocast(torch.device("cpu"), bf16):
        net(x, t, cond)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            net(x, t, cond)
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads; milliseconds per forward pass")
    print("| network | params | input | fp32 ms | bf16 ms |")
    print("|---|---|---|---|---|")
    for size_name, (dims, shape, cond_ch) in SIZES.items():
        for net_name, kw in CANDIDATES.items():
            if kw["spatial_dims"] != dims:
                continue
            cfg = UNetConfig(data_channels=shape[1], cond_channels=cond_ch, **kw)
            net = UNetDenoiser(cfg).eval()
            fp32 = time_forward(net, shape, cond_ch, False, args.repeats)
            bf16 = time_forward(net, shape, cond_ch, True, args.repeats)
            print(f"| {net_name} | {count_parameters(net) / 1e6:.2f} M | {size_name} | {fp32:.0f} | {bf16:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
