"""StreamResampler: rational-ratio polyphase FIR resampling of a mono float32 stream.

Used by the live engine when a capture device runs at 44.1 or 48 kHz and the features want
16 kHz. Blocks of any size go in; the output is the same whatever the blocking (the filter
history and the output phase are carried from one call to the next). Every buffer is made
in ``__init__``; :meth:`StreamResampler.process` allocates no arrays.

The filter
----------
With ``g = gcd(rate_in, rate_out)``, ``L = rate_out / g`` and ``M = rate_in / g``, resampling
is: upsample by ``L`` (insert ``L - 1`` zeros), low-pass, keep every ``M``-th sample. The
low-pass is a windowed sinc, the Kaiser design (Oppenheim & Schafer, "Discrete-Time Signal
Processing", 3rd ed., section 7.6):

* ``f_nyq = min(rate_in, rate_out) / 2`` (8 kHz for 48/44.1 -> 16 kHz);
* passband edge ``0.825 * f_nyq`` (6.6 kHz), stopband edge ``f_nyq`` (8 kHz): everything
  that would alias into the output is in the stopband, and the passband still covers the
  features' mel bands up to about 6.6 kHz flat (measured: 1 kHz and 6.6 kHz within 0.01 dB,
  7 kHz -1.4 dB, 7.5 kHz -12 dB, 8 kHz -58 dB, 9 kHz and up below -66 dB);
* cutoff ``fc`` (the -6 dB point) mid-way between them, 7.3 kHz;
* stopband attenuation ``A = 60`` dB, so Kaiser ``beta = 0.1102 * (A - 8.7) = 5.65``;
* length: the Kaiser formula ``N = (A - 8) / (2.285 * dw)``, ``dw = 2 pi (f_stop - f_pass) /
  rate_in`` taps at the input rate (125 taps at 48 kHz, 115 at 44.1 kHz), so ``K = ceil(N)``
  taps per output phase and ``L * K`` taps in the prototype at the upsampled rate ``L * rate_in``:

      h[m] = L * (2 fc / (L rate_in)) * sinc(2 fc / (L rate_in) * (m - (L K - 1) / 2)) * kaiser(L K, beta)[m]

  scaled so that ``sum(h) == L`` (unity gain at DC after the zero-stuffing, which divides it by ``L``).

Output sample ``j`` sits at input time ``t = j M / L``; with ``n0 = floor(t)`` and phase
``p = (j M) mod L`` it is ``y[j] = sum_k x[n0 - k] * h[p + k L]`` (``k = 0 .. K-1``), i.e. a
``K``-tap dot product with row ``p`` of the polyphase matrix. The delay is ``(L K - 1) / (2 L)``
input samples (about 1.3 ms at 48 kHz), constant.
"""

from __future__ import annotations

import math

import numpy as np

PASS_FRACTION = 0.825  # passband edge / output Nyquist
STOP_DB = 60.0
_WORK_ROWS = 512  # outputs computed per inner step (bounds the work matrices)


def design_polyphase(rate_in: int, rate_out: int) -> tuple[np.ndarray, int, int]:
    """The polyphase filter bank for ``rate_in -> rate_out``.

    Returns
    -------
    (bank, L, M):
        ``bank`` ``(L, K) float32``: row ``p`` holds ``h[p + k L]`` for ``k = K-1 .. 0`` (reversed,
        so that a dot product with the input window ``x[n0-K+1 .. n0]`` gives an output);
        ``L`` and ``M`` the reduced up/down factors.
    """
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    f_nyq = min(rate_in, rate_out) / 2.0
    f_pass, f_stop = PASS_FRACTION * f_nyq, f_nyq
    fc = 0.5 * (f_pass + f_stop)
    dw = 2.0 * math.pi * (f_stop - f_pass) / rate_in
    taps = max(4, math.ceil((STOP_DB - 8.0) / (2.285 * dw)))
    n = up * taps
    beta = 0.1102 * (STOP_DB - 8.7)
    m = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    wc = 2.0 * fc / (up * rate_in)  # cutoff over the upsampled rate's Nyquist; np.sinc(x) = sin(pi x)/(pi x)
    h = wc * np.sinc(wc * m) * np.kaiser(n, beta)
    h *= up / h.sum()
    bank = h.reshape(taps, up).T[:, ::-1]  # bank[p, K-1-k] = h[p + k L]
    return np.ascontiguousarray(bank, dtype=np.float32), up, down


class StreamResampler:
    """Resample a mono stream from ``rate_in`` to ``rate_out`` Hz, block by block.

    Parameters
    ----------
    rate_in, rate_out:
        Sample rates in Hz (positive integers). Equal rates copy the input through.
    max_block:
        The largest block :meth:`process` is expected to get; larger blocks are processed in
        pieces of this size (same result), so it only sizes the internal buffers.

    Attributes
    ----------
    delay_in:
        Constant delay of the output, in input samples.
    """

    def __init__(self, rate_in: int, rate_out: int = 16000, max_block: int = 8192) -> None:
        if int(rate_in) != rate_in or int(rate_out) != rate_out or rate_in < 1 or rate_out < 1:
            raise ValueError(f"rates must be positive integers in Hz, got {rate_in!r} -> {rate_out!r}")
        if max_block < 1:
            raise ValueError(f"max_block must be >= 1, got {max_block}")
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self.max_block = int(max_block)
        self.identity = self.rate_in == self.rate_out
        if self.identity:
            self.delay_in = 0.0
            return
        self._bank, self._up, self._down = design_polyphase(self.rate_in, self.rate_out)
        k = self._bank.shape[1]
        self._taps = k
        self.delay_in = (self._up * k - 1) / (2.0 * self._up)
        # buf[:K-1] is the history (the last K-1 input samples), the block follows it. Two
        # buffers taking turns, so carrying the history over is a copy without overlap.
        self._bufs = (np.zeros(k - 1 + self.max_block, np.float32), np.zeros(k - 1 + self.max_block, np.float32))
        self._cur = 0
        self._t = 0  # next output's position, in 1/L input samples, from the current block start
        rows = min(_WORK_ROWS, self.max_out(self.max_block))
        self._ramp = np.arange(rows, dtype=np.int64)
        # tap offsets 0..K-1 in every row: adding a full matrix, not a broadcast row, because a
        # broadcasting ufunc allocates an iteration buffer
        self._taps_mat = np.tile(np.arange(k, dtype=np.int64), (rows, 1))
        self._pos = np.zeros(rows, np.int64)
        self._start = np.zeros(rows, np.int64)
        self._phase = np.zeros(rows, np.int64)
        self._idx = np.zeros((rows, k), np.int64)
        self._win = np.zeros((rows, k), np.float32)
        self._coef = np.zeros((rows, k), np.float32)

    def max_out(self, n_in: int) -> int:
        """The most output samples ``n_in`` input samples can give (size ``out`` with it)."""
        if self.identity:
            return int(n_in)
        return (int(n_in) * self._up) // self._down + 1

    def reset(self) -> None:
        """Forget the history (a new, unrelated stream follows)."""
        if not self.identity:
            self._bufs[self._cur][:] = 0.0
            self._t = 0

    def process(self, block_in: np.ndarray, out: np.ndarray) -> int:
        """Resample ``block_in`` ``(n,) float32`` into ``out`` ``(m,) float32``; return ``n_out``.

        ``out`` must hold at least :meth:`max_out` ``(n)`` samples. The output continues the
        previous call's exactly (history and phase are kept).
        """
        if block_in.ndim != 1 or out.ndim != 1:
            raise ValueError(f"expected 1-D blocks, got shapes {block_in.shape} -> {out.shape}")
        n = block_in.shape[0]
        need = self.max_out(n)
        if out.shape[0] < need:
            raise ValueError(f"out holds {out.shape[0]} samples; {n} input samples need up to {need}")
        if self.identity:
            out[:n] = block_in
            return n
        done = 0
        for a in range(0, n, self.max_block):
            done += self._process_chunk(block_in[a:a + self.max_block], out[done:])
        return done

    def _process_chunk(self, x: np.ndarray, out: np.ndarray) -> int:
        n = x.shape[0]
        k1 = self._taps - 1
        up, down = self._up, self._down
        buf = self._bufs[self._cur]
        buf[k1:k1 + n] = x
        # outputs whose newest input sample x[floor(t / L)] is in this block
        t = self._t
        n_out = 0 if t > n * up - 1 else (n * up - 1 - t) // down + 1
        rows = self._ramp.shape[0]
        for r0 in range(0, n_out, rows):
            r = min(rows, n_out - r0)
            pos, start, phase = self._pos[:r], self._start[:r], self._phase[:r]
            np.multiply(self._ramp[:r], down, out=pos)
            pos += t + r0 * down
            np.floor_divide(pos, up, out=start)  # n0 relative to the block = window start in buf
            np.remainder(pos, up, out=phase)
            idx, win, coef = self._idx[:r], self._win[:r], self._coef[:r]
            np.copyto(idx, start[:, None])  # a broadcasting copy allocates nothing
            np.add(idx, self._taps_mat[:r], out=idx)
            np.take(buf, idx, out=win, mode="clip")
            np.take(self._bank, phase, axis=0, out=coef, mode="clip")
            np.multiply(win, coef, out=win)
            np.sum(win, axis=1, out=out[r0:r0 + r])
        self._t = t + n_out * down - n * up
        # the newest K-1 samples of (history + block) become the next history
        self._cur ^= 1
        self._bufs[self._cur][:k1] = buf[n:n + k1]
        return n_out
