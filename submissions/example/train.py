"""Train the example model on the v1 train split (held-out train specimens for validation).

    python submissions/example/train.py [--split PATH] [--iterations 3000] [--device cpu]

Pairs are built as the harness will present them: each LR volume is interpolated linearly along z
to the HR slice positions, then random 48 x 48 LR patches are paired with their 96 x 96 HR
patches, all on the split's fixed intensity window mapped to [0, 1]. L1 loss, Adam. The last
two train specimens (one on a tiny split) are held out for validation; the test split is never
read. Writes ``weights.safetensors`` beside this file (the best validation L1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import WEIGHTS, ExampleNet  # noqa: E402

from bonesr_bench.segmentation import normalise  # noqa: E402
from bonesr_bench.split import SEGMENTATION, SPLITS, ensure, iter_specimens  # noqa: E402


def pairs(path, names=None):
    """(LR interpolated to the HR slices, HR) per train specimen, both in [0, 1]."""
    out = []
    for sp in iter_specimens(path, "train"):
        lr = torch.from_numpy(normalise(sp.lr, SEGMENTATION.window))
        lr = F.interpolate(lr[None, None], scale_factor=(2, 1, 1), mode="trilinear",
                           align_corners=False)[0, 0]
        out.append((sp.name, lr, torch.from_numpy(normalise(sp.hr, SEGMENTATION.window))))
    return out


def batch(data, rng, n=16, size=48):
    lrs, hrs = [], []
    for _ in range(n):
        _, lr, hr = data[rng.integers(len(data))]
        size = min(size, lr.shape[1] - 1, lr.shape[2] - 1)  # small splits (mini)
        z = rng.integers(lr.shape[0])
        y, x = rng.integers(0, lr.shape[1] - size), rng.integers(0, lr.shape[2] - size)
        lrs.append(lr[z, y : y + size, x : x + size])
        hrs.append(hr[z, 2 * y : 2 * y + 2 * size, 2 * x : 2 * x + 2 * size])
    return torch.stack(lrs)[:, None], torch.stack(hrs)[:, None]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default=None, help="train split store (default: v1, in the cache)")
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(WEIGHTS))
    args = ap.parse_args(argv)
    from safetensors.torch import save_file

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    path = args.split or ensure(None, SPLITS["v1"], part="train")
    data = pairs(path)
    n_val = 2 if len(data) > 3 else 1
    train, val = data[:-n_val], data[-n_val:]
    vrng = np.random.default_rng(12345)
    val_batches = [batch(val, vrng, n=32) for _ in range(4)]
    net = ExampleNet().to(args.device)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.iterations)
    best, t0 = float("inf"), time.time()
    for it in range(1, args.iterations + 1):
        lr, hr = (t.to(args.device) for t in batch(train, rng))
        loss = F.l1_loss(net(lr), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 250 == 0 or it == args.iterations:
            with torch.no_grad():
                v = float(np.mean([F.l1_loss(net(a.to(args.device)).clamp(0, 1),
                                             b.to(args.device)).item() for a, b in val_batches]))
            if v < best:
                best = v
                save_file({k: t.detach().cpu().contiguous() for k, t in net.state_dict().items()},
                          args.out)
            print(f"iteration {it}: train L1 {loss.item():.4f}, validation L1 {v:.4f} "
                  f"(best {best:.4f}), {time.time() - t0:.0f} s", flush=True)
    print(f"weights: {args.out}")


if __name__ == "__main__":
    main()
