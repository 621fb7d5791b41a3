"""DAN v1 (Luo et al. 2020), x2, one channel: the blind SR baseline of the reference study.

Luo Z, Huang Y, Li S, Wang L, Tan T (2020) Unfolding the alternating optimization for blind super
resolution. Advances in Neural Information Processing Systems 33 (NeurIPS 2020). Official code:
github.com/greatlog/DAN (DANv1: network in codes/config/DANv1/models/modules/dan_arch.py, x2
setting 1 in codes/config/DANv1/options/setting1/train/train_setting1_x2.yml, degradation and PCA
in codes/utils/deg_utils.py and codes/config/DANv1/creat_PCA.py, the MATLAB-style bicubic resize
in codes/data/util.py, the loss in codes/config/DAN/models/blind_model.py). Re-written here in
torch.

The network alternates two modules, unfolded ``loop`` = 4 times from the code of a Dirac kernel::

    k_0 = P^T delta                   (the 10-dim PCA code of a 21 x 21 Dirac kernel)
    SR_i = Restorer(LR, k_{i-1})      (k_{i-1} detached)
    k_i  = Estimator(SR_i, LR)        (SR_i detached)

Restorer (x2): conv 3 x 3, 1 -> 64; 40 conditional residual blocks (CRB: the code is stretched to
a 10-channel map and concatenated to the 64 features; conv 3 x 3, 74 -> 74, LeakyReLU 0.2,
conv 3 x 3, 74 -> 64, channel attention (global average pool, 1 x 1 conv 64 -> 4, LeakyReLU 0.2,
1 x 1 conv 4 -> 64, sigmoid); a skip around the block); conv 3 x 3, 64 -> 64; conv 3 x 3,
64 -> 256, pixel shuffle x2, conv 3 x 3, 64 -> 1. There is no skip around the body.

Estimator: its own 64 features split in halves: the LR through conv 1 x 1, 1 -> 32, the SR through
conv 9 x 9, stride 2, 1 -> 32 (back to the LR grid); 5 CRBs on the LR features conditioned on the
SR features (conv 64 -> 64, LeakyReLU, conv 64 -> 32, channel attention 32 -> 2 -> 32); conv 3 x 3,
32 -> 10, global average pool: the kernel code.

4 174 245 parameters (the official RGB x2 network has 4 181 799; one channel removes 7 554 weights
of the two heads and the last conv). The PCA matrix (441 x 10), the kernels' mean and the
initial code are buffers, saved with the weights. The network is fully convolutional and every
stride meets its own padding, so any LR size gives exactly (2h, 2w): no padding is needed.

Degradation (setting 1, x2, as ``SRMDPreprocessing``): an isotropic Gaussian kernel of 21 x 21
taps, sigma uniform in [0.2, 4.0], normalised to sum 1; the HR blurred with it (reflection
padding); then MATLAB ``imresize(., 1/2)`` bicubic with anti-aliasing (the 8-tap filter
cubic(x / 2) / 2 at offsets +-0.5 ... +-3.5, symmetric padding). The target code is the kernel
flattened times the PCA matrix (no centring, as the official encoder).

Training, as the official code: L1 between the last SR and HR plus L1 between the last estimated
code and the true one (their loop over the iterations keeps only the last pair of losses); Adam,
learning rate 4e-4, betas (0.9, 0.99), halved at half the iterations; PyTorch's default init;
random flips and transposes; HR patches of 128 (LR 64). Their batch of 64 over 8 GPUs and 400 000
iterations on DIV2K + Flickr2K become a batch of 16 and 12 000 iterations on the train split's HR
slices, about 20 minutes on one H100 (estimated from the cost of one step: the three first loops
forward, the last forward and backward, about 50 MFLOP per LR pixel).

Deviations from the official DAN v1:

* one channel in and out (our slices) instead of RGB;
* the PCA basis is computed in closed form over the sigma range (midpoint rule on 512 sigmas
  of the uniform distribution, eigenvectors of the covariance, sign fixed), not from 30 000
  random kernels, so it is deterministic; it spans the same space. The kernels' mean is stored
  too, only to decode codes back to kernels (``decode``; the network never uses it);
* in training, the loops before the last run without autograd: the official code detaches
  every input that crosses a loop and supervises only the last one, so the gradients are the
  same and the memory is a quarter;
* no rounding of the LR to 8 bits (theirs matches 8-bit PNG test images; our LR are floats);
* flips and transposes are applied to the (LR, HR) pair after the degradation, per sample;
  with an isotropic kernel and a symmetric resize this equals degrading a flipped HR, as they do;
* the channel attention keeps at least one channel (only matters for ``TINY_CONFIG``);
* validation is the project's (L1 on held-out, DAN-degraded HR patches), not PSNR on Set5;
* batch, iterations and data as above.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bonesr_bench.models import TorchModel
from bonesr_bench.training import Recipe, make_optimiser, make_scheduler

WEIGHTS = Path(__file__).resolve().parent / "weights" / "dan.safetensors"
CONFIG = {"nf": 64, "nb": 40, "loop": 4, "estimator_nf": 64, "estimator_blocks": 5,
          "code_length": 10, "ksize": 21, "sig_min": 0.2, "sig_max": 4.0, "scale": 2}
TINY_CONFIG = {**CONFIG, "nf": 8, "nb": 1, "loop": 2, "estimator_nf": 8, "estimator_blocks": 1}
RECIPE = Recipe(
    loss="l1", optimiser="adam", learning_rate=4e-4, betas=(0.9, 0.99), schedule="step",
    milestones=(0.5,), gamma=0.5, iterations=12000, batch_size=16, patch=64, seed=0, data="hr",
    validate_every=1000, checkpoint_every=1000, keep="best", weights_dtype="float16",
    notes="DAN v1: L1(SR) + L1(kernel code) on the last loop; HR degraded by Task.degrade",
)

#: Sigmas of the midpoint rule that defines the PCA basis.
PCA_SAMPLES = 512


# ----------------------------------------------------------------------------------------------
# Kernels and degradation


def gaussian_kernels(sigma: torch.Tensor, ksize: int = 21) -> torch.Tensor:
    """Isotropic Gaussian kernels (n, ksize, ksize) of standard deviations ``sigma`` (n,), each
    summing to 1, in sigma's dtype."""
    ax = torch.arange(ksize, dtype=sigma.dtype, device=sigma.device) - ksize // 2
    r2 = ax[:, None] ** 2 + ax[None, :] ** 2
    k = torch.exp(-r2 / (2.0 * sigma[:, None, None] ** 2))
    return k / k.sum(dim=(1, 2), keepdim=True)


def pca_basis(ksize: int, sig_min: float, sig_max: float, n_codes: int,
              n: int = PCA_SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """(basis (ksize^2, n_codes), mean (ksize^2,)) of the kernels with sigma uniform in
    [sig_min, sig_max]: the leading eigenvectors of their covariance, each signed so that its
    largest-magnitude entry is positive."""
    sigma = sig_min + (torch.arange(n, dtype=torch.float64) + 0.5) * ((sig_max - sig_min) / n)
    x = gaussian_kernels(sigma, ksize).reshape(n, -1)
    mean = x.mean(0)
    xc = x - mean
    _, vecs = torch.linalg.eigh(xc.T @ xc / n)
    basis = vecs[:, -n_codes:].flip(1)
    peak = basis.gather(0, basis.abs().argmax(0, keepdim=True))
    return (basis * peak.sign()).float(), mean.float()


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``imresize`` 'cubic')."""
    a = x.abs()
    near = (1.5 * a - 2.5) * a * a + 1.0
    far = ((-0.5 * a + 2.5) * a - 4.0) * a + 2.0
    return torch.where(a <= 1, near, torch.where(a <= 2, far, torch.zeros_like(a)))


def _half_filter(dtype, device) -> torch.Tensor:
    """The 8 taps of MATLAB bicubic down-sampling by 2 with anti-aliasing."""
    offsets = torch.arange(-3.5, 4.0, 1.0, dtype=torch.float64)
    w = _cubic(offsets / 2)
    return (w / w.sum()).to(dtype=dtype, device=device)


def _symmetric_pad(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    """Mirror padding that repeats the edge sample (numpy's and MATLAB's 'symmetric')."""
    n = x.shape[dim]
    idx = torch.arange(-before, n + after, device=x.device)
    idx = idx % (2 * n)
    idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
    return x.index_select(dim, idx)


def bicubic_half(x: torch.Tensor) -> torch.Tensor:
    """MATLAB ``imresize(x, 0.5)`` (bicubic, anti-aliased) of (B, C, H, W): (B, C, ceil(H/2),
    ceil(W/2)); output sample i is centred between input samples 2i and 2i + 1."""
    b, c, h, w = x.shape
    taps = _half_filter(x.dtype, x.device)
    y = x.reshape(b * c, 1, h, w)
    y = _symmetric_pad(y, 3, 3 + h % 2, 2)
    y = F.conv2d(y, taps.view(1, 1, 8, 1), stride=(2, 1))
    y = _symmetric_pad(y, 3, 3 + w % 2, 3)
    y = F.conv2d(y, taps.view(1, 1, 1, 8), stride=(1, 2))
    return y.reshape(b, c, y.shape[-2], y.shape[-1])


def blur(hr: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Each image of ``hr`` (B, C, H, W) blurred with its kernel (B, k, k), same size
    (reflection padding, as their ``BatchBlur``; edge replication on images smaller than it)."""
    b, c, h, w = hr.shape
    k = kernels.shape[-1]
    p = k // 2
    mode = "reflect" if min(h, w) > p else "replicate"
    x = F.pad(hr.reshape(1, b * c, h, w), (p, p, p, p), mode=mode)
    weight = kernels.to(hr.dtype).repeat_interleave(c, 0).unsqueeze(1)
    return F.conv2d(x, weight, groups=b * c).reshape(b, c, h, w)


def blur_downsample(hr: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """The DAN setting-1 degradation of ``hr`` (B, C, H, W) with ``kernels`` (B, k, k), x2."""
    return bicubic_half(blur(hr, kernels))


# ----------------------------------------------------------------------------------------------
# Network


class ChannelAttention(nn.Module):
    def __init__(self, nf: int, reduction: int = 16):
        super().__init__()
        mid = max(1, nf // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.body = nn.Sequential(nn.Conv2d(nf, mid, 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(mid, nf, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.body(self.pool(x))


class CRB(nn.Module):
    """Conditional residual block: ``f + body(cat(f, cond))``; ``cond`` passes unchanged."""

    def __init__(self, nf: int, n_cond: int):
        super().__init__()
        n = nf + n_cond
        self.body = nn.Sequential(nn.Conv2d(n, n, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(n, nf, 3, padding=1), ChannelAttention(nf))

    def forward(self, f: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return f + self.body(torch.cat([f, cond], 1))


class Restorer(nn.Module):
    def __init__(self, nf: int = 64, nb: int = 40, code_length: int = 10, scale: int = 2):
        super().__init__()
        if scale != 2:
            raise ValueError("this DAN is the x2 network")
        self.head = nn.Conv2d(1, nf, 3, padding=1)
        self.body = nn.ModuleList(CRB(nf, code_length) for _ in range(nb))
        self.fusion = nn.Conv2d(nf, nf, 3, padding=1)
        self.upscale = nn.Sequential(nn.Conv2d(nf, nf * scale ** 2, 3, padding=1),
                                     nn.PixelShuffle(scale), nn.Conv2d(nf, 1, 3, padding=1))

    def forward(self, lr: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        b, _, h, w = lr.shape
        cond = code.view(b, -1, 1, 1).expand(b, code.shape[1], h, w)
        f = self.head(lr)
        for block in self.body:
            f = block(f, cond)
        return self.upscale(self.fusion(f))


class Estimator(nn.Module):
    def __init__(self, nf: int = 64, n_blocks: int = 5, code_length: int = 10, scale: int = 2):
        super().__init__()
        half = nf // 2
        self.head_lr = nn.Conv2d(1, half, 1)
        self.head_sr = nn.Conv2d(1, half, 9, stride=scale, padding=4)
        self.body = nn.ModuleList(CRB(half, half) for _ in range(n_blocks))
        self.out = nn.Conv2d(half, code_length, 3, padding=1)

    def forward(self, sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        f, cond = self.head_lr(lr), self.head_sr(sr)
        for block in self.body:
            f = block(f, cond)
        return self.out(f).mean(dim=(2, 3))


class DAN(nn.Module):
    """Restorer and Estimator unfolded ``loop`` times; the PCA matrix as a buffer."""

    def __init__(self, nf: int = 64, nb: int = 40, loop: int = 4, estimator_nf: int = 64,
                 estimator_blocks: int = 5, code_length: int = 10, ksize: int = 21,
                 sig_min: float = 0.2, sig_max: float = 4.0, scale: int = 2):
        super().__init__()
        self.scale, self.loop, self.ksize = scale, loop, ksize
        self.sig_min, self.sig_max = sig_min, sig_max
        self.restorer = Restorer(nf, nb, code_length, scale)
        self.estimator = Estimator(estimator_nf, estimator_blocks, code_length, scale)
        basis, mean = pca_basis(ksize, sig_min, sig_max, code_length)
        self.register_buffer("pca", basis)
        self.register_buffer("pca_mean", mean)
        dirac = torch.zeros(1, ksize, ksize)
        dirac[0, ksize // 2, ksize // 2] = 1.0
        self.register_buffer("init_code", self.encode(dirac))

    def encode(self, kernels: torch.Tensor) -> torch.Tensor:
        """PCA codes (B, L) of kernels (B, k, k), as the official encoder (no centring)."""
        return kernels.reshape(kernels.shape[0], -1).to(self.pca.dtype) @ self.pca

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Kernels (B, k, k) back from codes: the mean's part outside the basis plus the basis
        times the codes (exact for kernels of the span)."""
        rest = self.pca_mean - self.pca @ (self.pca.T @ self.pca_mean)
        return (rest + codes @ self.pca.T).reshape(-1, self.ksize, self.ksize)

    def unfold(self, lr: torch.Tensor, graph_last_only: bool = False):
        """Every loop's SR and kernel code: (list of (B, 1, 2h, 2w), list of (B, L)). With
        ``graph_last_only`` the earlier loops run without autograd (training: only the last
        loop is supervised and every input crossing a loop is detached)."""
        code = self.init_code.expand(lr.shape[0], -1)
        srs, codes = [], []
        for i in range(self.loop):
            track = torch.is_grad_enabled() and (not graph_last_only or i == self.loop - 1)
            with torch.set_grad_enabled(track):
                sr = self.restorer(lr, code.detach())
                code = self.estimator(sr.detach(), lr)
            srs.append(sr)
            codes.append(code)
        return srs, codes

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.unfold(lr, graph_last_only=True)[0][-1]


def network(config: dict | None = None) -> DAN:
    return DAN(**(config or CONFIG))


# ----------------------------------------------------------------------------------------------
# Training


class DANTask:
    """DAN's training: HR patches degraded here with random Gaussian kernels, L1 on the last SR
    plus L1 on the last kernel code, one Adam over both modules."""

    def __init__(self, net: DAN, recipe: Recipe, device="cpu"):
        self.net, self.device = net, torch.device(device)
        opt = make_optimiser(net.parameters(), recipe)
        self.networks = {"generator": net}
        self.optimisers = {"generator": opt}
        self.schedulers = {"generator": make_scheduler(opt, recipe)}

    def draw_kernels(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random setting-1 kernels (n, k, k), float32 on the CPU."""
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        sigma = self.net.sig_min + (self.net.sig_max - self.net.sig_min) * u
        return gaussian_kernels(sigma, self.net.ksize).float()

    def degrade(self, hr: torch.Tensor, generator: torch.Generator):
        """(LR (B, 1, ceil(H/2), ceil(W/2)), true kernel codes (B, L)) of an HR batch, on the
        task's device; deterministic for a given generator state."""
        kernels = self.draw_kernels(hr.shape[0], generator).to(self.device)
        with torch.no_grad():
            lr = blur_downsample(hr.to(self.device, torch.float32), kernels)
            codes = self.net.encode(kernels)
        return lr, codes

    @staticmethod
    def augment(lr: torch.Tensor, hr: torch.Tensor):
        """Random flips and transposes, per sample, the same for LR and HR (global RNG)."""
        draws = torch.rand(lr.shape[0], 3) < 0.5
        ops = [lambda x: x.flip(-1), lambda x: x.flip(-2)]
        if lr.shape[-1] == lr.shape[-2] and hr.shape[-1] == hr.shape[-2]:
            ops.append(lambda x: x.transpose(-1, -2))
        for j, op in enumerate(ops):
            m = draws[:, j].to(lr.device).view(-1, 1, 1, 1)
            lr, hr = torch.where(m, op(lr), lr), torch.where(m, op(hr), hr)
        return lr, hr

    def step(self, lr, hr, aux) -> dict[str, float]:
        lr, hr = self.augment(lr.to(self.device), hr.to(self.device))
        codes = aux.to(self.device)
        srs, est = self.net.unfold(lr, graph_last_only=True)
        l_sr = F.l1_loss(srs[-1], hr)
        l_ker = F.l1_loss(est[-1], codes)
        loss = l_sr + l_ker
        opt = self.optimisers["generator"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.schedulers["generator"].step()
        return {"loss": float(loss.detach()), "l_sr": float(l_sr.detach()),
                "l_ker": float(l_ker.detach())}

    def predict(self, lr):
        return self.net(lr)


def task(net: DAN, recipe: Recipe, device="cpu") -> DANTask:
    return DANTask(net, recipe, device)


# ----------------------------------------------------------------------------------------------
# Submission


class DANModel(TorchModel):
    name = "dan"
    authors = "bonesr-bench (after Luo, Huang, Li, Wang & Tan 2020)"
    paper = ("Luo Z, Huang Y, Li S, Wang L, Tan T (2020) Unfolding the alternating optimization "
             "for blind super resolution. NeurIPS")
    licence = "BSD-3-Clause"
    training_data = "bonesr-bench synth-v2 train split (HR slices, DAN setting-1 degradation)"
    weights = WEIGHTS


def load(device) -> DANModel:
    return DANModel.from_weights(
        network(), WEIGHTS, device, train_hint="bonesr-bench train baselines/dan.py")
