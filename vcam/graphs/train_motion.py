"""Train the lip model (:class:`vcam.graphs.motion_model.LipNet`) on espeak-ng, Flite and Kokoro speech.

    python -m vcam.graphs.train_motion [--epochs N] [--utterances N]

Makes (or reuses) the training data in ``~/.cache/vcam/lipdata`` (``$VCAM_CACHE_DIR/lipdata`` where that
is set; :mod:`vcam.graphs.lipdata`),
trains on 2 CPU threads with a fixed seed and writes ``vcam/graphs/weights/lips.npz``. Then
run ``python -m vcam.graphs.export_motion``.

Targets: the output for a window ending at frame ``e`` is the viseme of the 10 ms slot
``e - LOOKAHEAD_FRAMES + 1 + LEAD_FRAMES``, i.e. of the time the video frame shows (window
end minus the look-ahead) plus a small lead, as lips move slightly before the sound. (Blurring
the targets in time was tried: smoother, but P/B/M closures got too weak.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vcam.runtime.features import FLOOR, N_MELS
from vcam.graphs import lipdata
from vcam.graphs.export_motion import WEIGHTS
from vcam.graphs.motion_model import LOOKAHEAD_FRAMES, VISEMES, WINDOW, LipNet

LEAD_FRAMES = 1
#: Kokoro's utterances (already in two augmentations each) count this many times per epoch: the
#: speech most like a person's, and the slowest to make (counted once, the dev clips' mean r_open
#: rendered was 0.756; twice, 0.766).
KOKORO_REPEAT = 2
CHUNK = 288
IGNORE = -100
#: Dropout drops a unit where a random byte is below this: 26 / 256 = 10.2 %.
DROP_BELOW = 26


class ByteDropout(nn.Module):
    """Dropout whose masks come from a numpy ``Generator`` (one random byte per unit) instead of
    torch's ``bernoulli_``, which took about 11 ms per ``(48, 96, 285)`` mask on this CPU (a third
    of each training step); numpy's bytes take 1.5 ms. Identity in eval mode, like ``nn.Dropout``.
    """

    def __init__(self, rng: np.random.Generator, drop_below: int = DROP_BELOW) -> None:
        super().__init__()
        self.rng = rng
        self.drop_below = drop_below
        self.scale = 256.0 / (256 - drop_below)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return h
        keep = torch.from_numpy(self.rng.integers(0, 256, tuple(h.shape), dtype=np.uint8) >= self.drop_below)
        return h * keep.to(h.dtype).mul_(self.scale)


def arrange(feats: np.ndarray, labels: np.ndarray, starts: np.ndarray, lead: int = LEAD_FRAMES):
    """Lay utterances end to end, each preceded by ``WINDOW - 1`` floor frames (as at a stream start).

    Returns ``x (N, N_MELS) float16`` and ``y (N,) int64``: ``y[i]`` is the target for the window
    ending at row ``i`` (``IGNORE`` in the padding and where the target slot is outside the utterance).
    """
    pad = WINDOW - 1
    n_utt = len(starts) - 1
    total = len(labels) + pad * n_utt
    x = np.empty((total, N_MELS), np.float16)
    y = np.full(total, IGNORE, np.int64)
    off = 0
    shift = -LOOKAHEAD_FRAMES + 1 + lead
    for u in range(n_utt):
        a, b = int(starts[u]), int(starts[u + 1])
        n = b - a
        x[off: off + pad] = FLOOR
        x[off + pad: off + pad + n] = feats[a:b]
        lab = labels[a:b].astype(np.int64)
        e = np.arange(n)
        src = e + shift
        ok = (src >= 0) & (src < n)
        y[off + pad + e[ok]] = lab[src[ok]]
        off += pad + n
    return x, y


def batches(x: np.ndarray, y: np.ndarray, batch: int, rng: np.random.Generator):
    """Random chunks: ``(B, N_MELS, CHUNK)`` inputs and ``(B, CHUNK - WINDOW + 1)`` targets per step."""
    n_out = CHUNK - WINDOW + 1
    n_steps = len(y) // (batch * n_out)
    for _ in range(n_steps):
        s = rng.integers(0, len(y) - CHUNK, size=batch)
        idx = s[:, None] + np.arange(CHUNK)[None, :]
        xb = torch.from_numpy(x[idx].astype(np.float32)).transpose(1, 2).contiguous()
        yb = torch.from_numpy(y[idx[:, WINDOW - 1:]])
        yield xb, yb


def augment_batch(xb: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Feature-level augmentation of ``(B, N_MELS, T)``: vocal-tract-length warp of the mel
    axis (+-12 %), level shift, spectral tilt, and one masked band of up to 6 mels."""
    b = xb.shape[0]
    alpha = rng.uniform(0.88, 1.12, b)
    src = np.clip(np.arange(N_MELS)[None, :] * alpha[:, None] + rng.uniform(-1, 1, (b, 1)), 0, N_MELS - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, N_MELS - 1)
    w = torch.from_numpy((src - lo).astype(np.float32))[:, :, None]
    idx_lo = torch.from_numpy(lo)[:, :, None].expand(-1, -1, xb.shape[2])
    idx_hi = torch.from_numpy(hi)[:, :, None].expand(-1, -1, xb.shape[2])
    xb = torch.gather(xb, 1, idx_lo) * (1 - w) + torch.gather(xb, 1, idx_hi) * w
    shift = torch.from_numpy(rng.uniform(-0.25, 0.25, (b, 1, 1)).astype(np.float32))
    tilt = torch.from_numpy(rng.uniform(-0.25, 0.25, (b, 1, 1)).astype(np.float32))
    ramp = torch.linspace(-1, 1, N_MELS).view(1, N_MELS, 1)
    xb = torch.clamp(xb + shift + tilt * ramp, min=FLOOR)
    for i in np.flatnonzero(rng.random(b) < 0.3):
        f0 = int(rng.integers(0, N_MELS - 6))
        xb[i, f0: f0 + int(rng.integers(1, 7))] = FLOOR
    return xb


def evaluate(net: LipNet, x: np.ndarray, y: np.ndarray, span: int = 4096) -> tuple[float, np.ndarray]:
    """Frame accuracy and confusion matrix (rows: truth) over all labelled rows."""
    net.eval()
    k = len(VISEMES)
    conf = np.zeros((k, k), np.int64)
    with torch.no_grad():
        for a in range(0, len(y) - WINDOW, span):
            b = min(len(y), a + span + WINDOW - 1)
            xb = torch.from_numpy(x[a:b].astype(np.float32)).T[None]
            pred = net(xb)[0].argmax(0).numpy()
            t = y[a + WINDOW - 1: b]
            m = t != IGNORE
            np.add.at(conf, (t[m], pred[m]), 1)
    net.train()
    return float(np.trace(conf) / max(conf.sum(), 1)), conf


def train(epochs: int = 14, n_utts: int = 3000, seed: int = 7, batch: int = 48, out: Path = WEIGHTS,
          threads: int = 2, log=print, kokoro_utts: int = lipdata.KOKORO_UTTERANCES) -> Path:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    mixed, kokoro = lipdata.build(n_utts=n_utts, kokoro_utts=kokoro_utts)
    log(f"data ready ({time.time() - t0:.0f} s)")
    val_paths, train_paths = mixed[-1:], mixed[:-1] + kokoro * KOKORO_REPEAT
    x, y = arrange(*lipdata.load(train_paths))
    xv, yv = arrange(*lipdata.load(val_paths))
    log(f"train {len(y) / 360000:.2f} h, val {len(yv) / 360000:.2f} h")

    net = LipNet()
    net.drop = ByteDropout(np.random.default_rng([seed, 1]))  # its own stream: batches are as before
    feats32 = x[::7].astype(np.float32)
    net.mean.copy_(torch.from_numpy(feats32.mean(0)).view(1, N_MELS, 1))
    net.inv_std.copy_(torch.from_numpy(1.0 / (feats32.std(0) + 1e-3)).view(1, N_MELS, 1))
    counts = np.bincount(y[y != IGNORE], minlength=len(VISEMES)).astype(np.float64)
    weight = torch.tensor((counts.sum() / (counts + 1.0) / len(VISEMES)) ** 0.5, dtype=torch.float32)
    weight = weight / weight.mean()

    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    n_out = CHUNK - WINDOW + 1
    steps_per_epoch = len(y) // (batch * n_out)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15)
    net.train()
    for ep in range(epochs):
        tl, nb = 0.0, 0
        for xb, yb in batches(x, y, batch, rng):
            xb = augment_batch(xb, rng)
            logits = net(xb)
            loss = F.cross_entropy(logits, yb, weight=weight, ignore_index=IGNORE, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tl += loss.item()
            nb += 1
        acc, _ = evaluate(net, xv, yv)
        log(f"epoch {ep + 1}/{epochs}: loss {tl / max(nb, 1):.3f}, val frame accuracy {acc:.3f} "
            f"({time.time() - t0:.0f} s)")
    net.eval()
    acc, conf = evaluate(net, xv, yv)
    log("confusion (rows truth, % of row): " + " ".join(VISEMES))
    for i, v in enumerate(VISEMES):
        row = conf[i] / max(conf[i].sum(), 1) * 100
        log(f"  {v:>4}: " + " ".join(f"{r:4.0f}" for r in row))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **{k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()})
    log(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB), val accuracy {acc:.3f}, {time.time() - t0:.0f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--utterances", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--kokoro", type=int, default=lipdata.KOKORO_UTTERANCES,
                    help="Kokoro-82M utterances in the data (0: none)")
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    a = ap.parse_args(argv)
    train(a.epochs, a.utterances, a.seed, out=a.out, kokoro_utts=a.kokoro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
