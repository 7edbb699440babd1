"""The motion graph as a torch module: speech window + emotion + state + noise -> motion vector.

One step per video frame. Inputs (see ``export_motion.py`` for the ONNX names):

- ``mel``     ``(1, N_MELS, WINDOW) float32``: log-mel frames (``vcam.runtime.features``) ending
  ``LOOKAHEAD_FRAMES`` after the time the video frame shows.
- ``emotion`` ``(1, 37) float32``: blendshape offsets (``vcam.runtime.channels.BLENDSHAPES`` order).
- ``state``   ``(1, STATE_SIZE) float32``: the previous step's ``state_out`` (zeros to start).
- ``noise``   ``(1, NOISE_SIZE) float32``: uniform ``[0, 1)``, fresh every step; the only
  source of randomness.
- ``dt``      ``(1, 1) float32``: seconds since the previous step.

Outputs: ``motion (1, 43) float32`` (``vcam.runtime.channels.MOTION``) and ``state_out``.

Parts:

- Lips: :class:`LipNet`, a small causal dilated convolution over the window, gives the
  probabilities of the :data:`VISEMES`; :data:`VISEME_TABLE` turns them into eight mouth
  channels, scaled by the frame's loudness (:data:`LOUD_RANGE_DB`), smoothed with
  attack/release time constants held in the state. A P/B/M whose probability rises through
  :data:`CLOSURE_COMMIT` in the 10 ms steps the frame stands for shuts the lips in that frame
  (:meth:`MotionGraph.closure_commit`), however weakly the network heard it.
- Blinks: a countdown in the state, intervals ``1 + gamma(2, 1.6)`` s (about 15/min in
  silence), counted down 1.25x faster while speaking (about 20/min), a blink that is due
  within 1.2 s brought forward to the end of a phrase, 10 % double blinks, 0.26 s per blink
  (close 70 ms, shut 50 ms, open 140 ms), both eyes.
- Head: voice envelope onsets give nods (pitch), speech turns the head to new yaw targets
  now and then, roll follows yaw; an Ornstein-Uhlenbeck drift keeps it alive in silence and
  grows while speaking (roll most);
  critically damped springs (second order) smooth everything; breathing moves headY/headZ.
- Gaze: small saccades every 0.5-3 s, mostly near the camera (eyeLook* <= 0.15).
- Emotion offsets are added to the blendshapes (mouth-opening offsets fade while the lips
  close, eyeWide while blinking), then everything is clamped to 0..1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vcam.runtime.channels import BLENDSHAPES, INDEX, N_BLENDSHAPES, N_MOTION

VISEMES: tuple[str, ...] = ("sil", "PBM", "FV", "U", "O", "A", "E", "I", "C")
"""Viseme classes: silence, bilabial closure (P B M), labiodental (F V), close rounded (U W),
open rounded (O), open (A), mid (E, schwa), spread (I, Y), other consonants (T D N S K G L R...)."""

LIP_CHANNELS: tuple[str, ...] = ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthStretch",
                                 "mouthUpperUp", "mouthLowerDown", "mouthPress")

#: viseme -> LIP_CHANNELS values, (len(VISEMES), len(LIP_CHANNELS))
VISEME_TABLE: tuple[tuple[float, ...], ...] = (
    # jaw  close funnel pucker stretch upUp lowDn press
    (0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00),  # sil
    (0.00, 0.60, 0.00, 0.00, 0.00, 0.00, 0.00, 0.70),  # PBM: lips pressed shut
    (0.08, 0.15, 0.00, 0.00, 0.10, 0.35, 0.00, 0.25),  # FV: lower lip to the upper teeth
    (0.24, 0.00, 0.35, 0.70, 0.00, 0.00, 0.05, 0.00),  # U: small rounded
    (0.52, 0.00, 0.55, 0.30, 0.00, 0.10, 0.25, 0.00),  # O: open rounded
    (0.70, 0.00, 0.00, 0.00, 0.15, 0.20, 0.40, 0.00),  # A: wide open
    (0.46, 0.00, 0.00, 0.00, 0.35, 0.20, 0.30, 0.00),  # E: mid open
    (0.30, 0.00, 0.00, 0.00, 0.50, 0.25, 0.25, 0.00),  # I: spread
    (0.22, 0.00, 0.00, 0.00, 0.20, 0.20, 0.20, 0.00),  # C: teeth, tongue
)

N_MELS = 64
#: Frames :class:`LipNet` reads for one output (its receptive field).
WINDOW = 32
LOOKAHEAD_FRAMES = 8
FRAME_S = 0.01
#: The 10 ms steps before the shown one whose P/B/M probability the graph also reads: a video
#: frame at 25 fps stands for 40 ms of speech, and a closure heard between two frames must still
#: show in one of them (:meth:`MotionGraph.closure_commit`).
CLOSURE_SPAN = 4
#: Frames of the motion graph's ``mel`` input: LipNet's window for the shown step and the
#: :data:`CLOSURE_SPAN` steps before it.
GRAPH_WINDOW = WINDOW + CLOSURE_SPAN
#: Index in the graph's window of the frame the video shows: the window's last frame minus the look-ahead.
SHOWN = GRAPH_WINDOW - 1 - LOOKAHEAD_FRAMES
#: A P/B/M whose probability rises through this, at or above every vowel's, brings the lips
#: together in that frame (:meth:`MotionGraph.closure_commit`). On speech the lip model never
#: heard, a bilabial's probability often peaks at only 0.25-0.5, where the smoothed closure
#: channel leaves the lips a third open: those were the misses.
CLOSURE_COMMIT = 0.2
#: ... and from this probability up they meet fully. Below it, the jaw and lips open at most
#: :data:`CLOSURE_NEAR_JAW` (at :data:`CLOSURE_COMMIT`, less above): a weakly heard P/B/M is as
#: often an N (real recordings: most rises through 0.2 away from a bilabial are N, K, D, T), and
#: lips nearly together read right for both: shutting them on every rise cost the development
#: clips' English r_open 0.06 offline, nearly shut 0.036 (``vcam bench --lipsync``, see the
#: README's Lip sync figures). At 0.1 the face tracker read nearly shut lips on the open-mouthed
#: astronaut photo as a third open.
CLOSURE_FULL = 0.5
CLOSURE_NEAR_JAW = 0.06
#: ... and only a rise of at least this much over the 10-20 ms before it: a P/B/M probability
#: that hovers about :data:`CLOSURE_COMMIT` (murmur, noise) is no bilabial being heard.
CLOSURE_RISE = 0.1
STATE_SIZE = 32
NOISE_SIZE = 16

# state layout
S_LIP = 0            # 8 smoothed lip channels
S_BLINK_CD = 8       # seconds to the next blink
S_BLINK_AGE = 9      # seconds since the current blink began
S_ENV_FAST = 10
S_ENV_SLOW = 11
S_YAW = 12           # yaw, yaw velocity, pitch, pitch velocity, roll, roll velocity
S_YAW_TGT = 18
S_YAW_TIMER = 19
S_DRIFT = 20         # 3 drift states: yaw, pitch, roll
S_BREATH = 23
S_GAZE_TGT = 24      # x, y
S_GAZE = 26          # x, y
S_SACCADE_CD = 28
S_NOD = 29
S_INIT = 30
S_VOICE = 31

# noise layout
N_BLINK_A, N_BLINK_B, N_DOUBLE, N_SACC_T, N_SACC_X, N_SACC_Y = 0, 1, 2, 3, 4, 5
N_DRIFT = 6  # 3
N_YAW_TGT, N_YAW_T, N_BREATH_RATE, N_BREATH_PHASE, N_DOUBLE_T, N_SACC_CENTER, N_BLINK_INIT = 9, 10, 11, 12, 13, 14, 15

#: Lip smoothing (seconds, LIP_CHANNELS order). The jaw releases in 20 ms so that it closes
#: between syllables: against the loudness of espeak-ng es/ja/sv/ru the rendered mouth scores
#: r_open 0.639 (0.621 with 40 ms) for 0.727 against 0.736 on the English dev clips
#: (``vcam bench --lipsync``).
_LIP_TAU_ATTACK = (0.030, 0.015, 0.040, 0.040, 0.035, 0.035, 0.030, 0.015)
_LIP_TAU_RELEASE = (0.020, 0.030, 0.060, 0.060, 0.050, 0.045, 0.040, 0.030)

#: Loudness scales the lip-opening channels (jaw, funnel, upper/lower lip): ``LOUD_GAIN[0]`` at
#: ``LOUD_RANGE_DB`` dB below the tracked speech level (``vcam.runtime.features``) or quieter, rising
#: linearly in dB to ``LOUD_GAIN[1]`` at that level. A loud, stressed vowel opens wider than a
#: murmured one the lip network names the same way, and a song's held notes open with their
#: loudness. 35 dB is the span of speech below its loud frames. The gain raises loud frames more
#: than it lowers quiet ones: the face tracker that measures the video misses small lip gaps, so
#: shrinking quiet syllables cost English r_open (0.6 .. 1: median 0.771 against 0.779 without).
#: Rendered (``vcam bench --lipsync``): other languages against their loudness 0.603 -> 0.645,
#: English median 0.779 -> 0.785 (mean 0.781 -> 0.782); 0.8 .. 1.1 gave 0.627 / 0.786, 1 .. 1.25
#: 0.647 / 0.782.
LOUD_RANGE_DB = 35.0
LOUD_GAIN = (0.9, 1.2)


class LipNet(nn.Module):
    """Causal dilated conv over log-mel frames -> viseme logits.

    ``(B, N_MELS, T) float32 -> (B, len(VISEMES), T - WINDOW + 1)``: output ``i`` reads frames
    ``i .. i + WINDOW - 1`` (receptive field ``WINDOW`` = 32 frames, no padding), so a
    ``(1, N_MELS, WINDOW)`` window gives one output, and training runs over whole utterances.
    """

    def __init__(self, n_mels: int = N_MELS, ch: int = 96, n_out: int = len(VISEMES)) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, n_mels, 1))
        self.register_buffer("inv_std", torch.ones(1, n_mels, 1))
        self.c1 = nn.Conv1d(n_mels, ch, 4)
        self.c2 = nn.Conv1d(ch, ch, 3, dilation=2)
        self.c3 = nn.Conv1d(ch, ch, 3, dilation=4)
        self.c4 = nn.Conv1d(ch, ch, 3, dilation=8)
        self.out = nn.Conv1d(ch, n_out, 1)
        self.drop = nn.Dropout(0.1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = (mel - self.mean) * self.inv_std
        h = torch.relu(self.c1(x))
        h = torch.relu(self.c2(self.drop(h))) + h[:, :, 4:]
        h = torch.relu(self.c3(self.drop(h))) + h[:, :, 8:]
        h = torch.relu(self.c4(self.drop(h))) + h[:, :, 16:]
        return self.out(self.drop(h))


def _alpha(dt: torch.Tensor, tau) -> torch.Tensor:
    return 1.0 - torch.exp(-dt / tau)


def _spring(x, v, target, omega: float, dt):
    """Critically damped second-order filter, one semi-implicit Euler step."""
    acc = omega * omega * (target - x) - 2.0 * omega * v
    v = v + dt * acc
    return x + dt * v, v


def _smoothstep(x):
    x = torch.clamp(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _col(t: torch.Tensor, i: int) -> torch.Tensor:
    return t[:, i: i + 1]


class MotionGraph(nn.Module):
    """The whole per-frame motion step (see the module docstring)."""

    def __init__(self, lips: LipNet | None = None) -> None:
        super().__init__()
        self.lips = lips if lips is not None else LipNet()
        nb = N_BLENDSHAPES
        self.register_buffer("table", torch.tensor(VISEME_TABLE, dtype=torch.float32))
        self.register_buffer("tau_attack", torch.tensor([_LIP_TAU_ATTACK], dtype=torch.float32))
        self.register_buffer("tau_release", torch.tensor([_LIP_TAU_RELEASE], dtype=torch.float32))
        lip_map = torch.zeros(len(LIP_CHANNELS), nb)
        for i, ch in enumerate(LIP_CHANNELS):
            names = [ch] if ch in INDEX else [ch + "Left", ch + "Right"]
            for n in names:
                lip_map[i, INDEX[n]] = 1.0
        self.register_buffer("lip_map", lip_map)
        # lip channels that open the lips (cleared while the lips are shut)
        self.register_buffer("lip_opening", torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]]))
        self.register_buffer("close_only", torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]))
        # eyes: blink, look +x (subject's left), -x, +y (up), -y (down)
        eye_map = torch.zeros(5, nb)
        eye_map[0, INDEX["eyeBlinkLeft"]] = eye_map[0, INDEX["eyeBlinkRight"]] = 1.0
        eye_map[1, INDEX["eyeLookOutLeft"]] = eye_map[1, INDEX["eyeLookInRight"]] = 1.0
        eye_map[2, INDEX["eyeLookInLeft"]] = eye_map[2, INDEX["eyeLookOutRight"]] = 1.0
        eye_map[3, INDEX["eyeLookUpLeft"]] = eye_map[3, INDEX["eyeLookUpRight"]] = 1.0
        eye_map[4, INDEX["eyeLookDownLeft"]] = eye_map[4, INDEX["eyeLookDownRight"]] = 1.0
        self.register_buffer("eye_map", eye_map)
        mouth_open = torch.zeros(1, nb)
        for n in ("jawOpen", "mouthFunnel", "mouthPucker", "mouthUpperUpLeft", "mouthUpperUpRight",
                  "mouthLowerDownLeft", "mouthLowerDownRight"):
            mouth_open[0, INDEX[n]] = 1.0
        self.register_buffer("mouth_open_mask", mouth_open)
        wide = torch.zeros(1, nb)
        wide[0, INDEX["eyeWideLeft"]] = wide[0, INDEX["eyeWideRight"]] = 1.0
        self.register_buffer("wide_mask", wide)
        # The idle drift (silence) and how speech changes it: more spread (roll most), and a
        # roll that comes and goes faster. Silence keeps the calm head of a listener.
        self.register_buffer("drift_sigma", torch.tensor([[1.2, 0.7, 0.9]]))  # degrees: yaw, pitch, roll
        self.register_buffer("drift_speech_gain", torch.tensor([[0.5, 0.4, 5.3]]))  # x sigma more while speaking
        self.register_buffer("drift_tau", torch.tensor([[2.5, 2.5, 2.5]]))  # s, in silence
        self.register_buffer("drift_tau_speech", torch.tensor([[2.5, 2.5, 0.9]]))  # s, while speaking
        assert len(BLENDSHAPES) + 6 == N_MOTION

    def visemes(self, mel: torch.Tensor) -> torch.Tensor:
        """Viseme probabilities of the shown step and the :data:`CLOSURE_SPAN` steps before it,
        ``(1, len(VISEMES), CLOSURE_SPAN + 1)``, oldest first (``[..., -1]``: the video frame's)."""
        return torch.softmax(self.lips(mel)[:, :, -(CLOSURE_SPAN + 1):], dim=1)

    @staticmethod
    def closure_commit(p: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whether the lips come together in this frame, and how far they may then open:
        ``(commit, jaw_cap)``, each ``(1, 1) float32``.

        ``commit`` is 1 where, at one of the last :data:`CLOSURE_SPAN` steps of ``p``
        (:meth:`visemes`) that came since the previous frame (``dt`` ``(1, 1)`` seconds ago: each
        rise shows in one frame), the P/B/M probability rose through :data:`CLOSURE_COMMIT` and stood at
        least as high as every vowel's (U, O, A, E, I), having risen by :data:`CLOSURE_RISE` or
        more over the one or two steps before. ``jaw_cap`` is :data:`CLOSURE_NEAR_JAW`
        at that probability, falling linearly to 0 (lips shut) at :data:`CLOSURE_FULL`.

        A rise, not a level: the moment a bilabial is heard, so a weak one brings the lips
        together once instead of leaving them a third open, and a vowel that keeps some P/B/M
        probability past a neighbouring M does not hold them shut."""
        pbm = p[:, 1, :]
        vowel = torch.amax(p[:, 3:8, :], dim=1)
        now, before = pbm[:, 1:], pbm[:, :-1]
        age_s = torch.arange(CLOSURE_SPAN - 1, -1, -1, dtype=torch.float32).view(1, CLOSURE_SPAN) * FRAME_S
        # the lower of the probabilities 10 and 20 ms before each step (the oldest: 10 ms before only)
        earlier = torch.minimum(before, torch.cat([pbm[:, :1], pbm[:, :-2]], dim=1))
        rise = ((now >= CLOSURE_COMMIT) & (before < CLOSURE_COMMIT) & (now >= vowel[:, 1:])
                & (now - earlier >= CLOSURE_RISE) & (age_s < dt - 0.001)).to(torch.float32)
        peak = torch.amax(rise * now, dim=1, keepdim=True)
        commit = torch.amax(rise, dim=1, keepdim=True)
        cap = CLOSURE_NEAR_JAW * torch.clamp((CLOSURE_FULL - peak) * (1.0 / (CLOSURE_FULL - CLOSURE_COMMIT)), 0.0, 1.0)
        return commit, cap

    @staticmethod
    def loudness_gain(mel: torch.Tensor) -> torch.Tensor:
        """``(1, 1)``: how far the lips open, ``LOUD_GAIN[0] .. LOUD_GAIN[1]``, from the loudness
        of the frame the video shows (see :data:`LOUD_RANGE_DB`).

        The features are ``(10 log10 mel_power - level_db) / 20`` per band, so the frame's power
        over all bands relative to the tracked speech level is ``10 log10 sum 10 ** (2 f)``."""
        shown = mel[:, :, SHOWN: SHOWN + 1]
        rel_db = (10.0 / math.log(10.0)) * torch.logsumexp(shown * (2.0 * math.log(10.0)), dim=1)
        loud = torch.clamp((rel_db + LOUD_RANGE_DB) * (1.0 / LOUD_RANGE_DB), 0.0, 1.0)
        return LOUD_GAIN[0] + (LOUD_GAIN[1] - LOUD_GAIN[0]) * loud

    def forward(self, mel, emotion, state, noise, dt):
        dt = torch.clamp(dt, 0.0, 0.1)
        init = _col(state, S_INIT)
        fresh = 1.0 - init
        u = noise

        # ---- lips
        steps = self.visemes(mel)
        p = steps[:, :, -1]
        commit, jaw_cap = self.closure_commit(steps, dt)
        target = torch.relu(p @ self.table - 0.02) * (1.0 / 0.98)
        target = target * (1.0 - self.lip_opening * (1.0 - self.loudness_gain(mel)))
        lip = state[:, S_LIP: S_LIP + len(LIP_CHANNELS)]
        rising = (target > lip).to(torch.float32)
        tau = rising * self.tau_attack + (1.0 - rising) * self.tau_release
        lip = lip + _alpha(dt, tau) * (target - lip)
        closed = torch.clamp(_col(lip, 1) * (1.0 / 0.6), 0.0, 1.0)
        # lips that close win over a jaw still on its way down: a full closure on P/B/M
        shut = _smoothstep((_col(lip, 1) - 0.15) * (1.0 / 0.35))
        lip_out = lip * (1.0 - shut * self.lip_opening)
        # a committed closure: the opening channels scaled so that the jaw opens at most jaw_cap
        jaw_now = _col(lip_out, 0)
        near = commit * (1.0 - torch.clamp(jaw_cap / torch.clamp(jaw_now, min=1e-4), max=1.0))
        lip_out = lip_out * (1.0 - near * self.lip_opening)
        closed = torch.maximum(closed, commit * (1.0 - jaw_cap * (1.0 / CLOSURE_NEAR_JAW)))
        # mouthClose is reported only while the lips are shut: a closure still fading after
        # a P/B/M must not hold the next vowel's lips together (ARKit: lips closed, jaw open)
        lip_out = lip_out * (1.0 - self.close_only * (1.0 - shut))

        # ---- voice envelope (display-time frames of the window)
        energy = torch.mean(mel[:, :, SHOWN - 1: SHOWN + 2], dim=(1, 2)).unsqueeze(1)
        env = torch.clamp((energy + 2.6) * (1.0 / 1.4), 0.0, 1.0)
        voice_before = _col(state, S_VOICE)
        voice = voice_before + _alpha(dt, 0.12) * ((1.0 - _col(p, 0)) - voice_before)
        drive = env * voice
        fast = _col(state, S_ENV_FAST)
        slow = _col(state, S_ENV_SLOW)
        fast = fast + _alpha(dt, 0.05) * (drive - fast)
        slow = slow + _alpha(dt, 0.6) * (drive - slow)
        onset = torch.relu(fast - slow - 0.06)

        # ---- blinks
        gamma2 = -torch.log(_col(u, N_BLINK_A) + 1e-6) - torch.log(_col(u, N_BLINK_B) + 1e-6)
        interval = 1.0 + 1.6 * gamma2
        double = (_col(u, N_DOUBLE) < 0.1).to(torch.float32)
        next_interval = double * (0.26 + 0.15 * _col(u, N_DOUBLE_T)) + (1.0 - double) * interval
        cd = init * _col(state, S_BLINK_CD) + fresh * (0.5 + 3.0 * _col(u, N_BLINK_INIT))
        age = init * _col(state, S_BLINK_AGE) + fresh * 10.0
        # The countdown runs faster while speaking (people blink more when they talk), and a
        # blink that is due soon comes at once where a phrase ends (blinks cluster in pauses).
        cd = cd - dt * (1.0 + 0.25 * voice)
        phrase_end = ((voice_before > 0.5) & (voice <= 0.5) & (cd < 1.2) & (age > 1.0)).to(torch.float32)
        cd = cd * (1.0 - phrase_end)
        trig = (cd <= 0.0).to(torch.float32)
        age = trig * (-cd) + (1.0 - trig) * torch.clamp(age + dt, max=10.0)
        cd = cd + trig * next_interval
        # close 70 ms, shut 50 ms (a frame at 25 fps always sees the lids meet), open 140 ms
        blink = torch.clamp(age * (1.0 / 0.07), 0.0, 1.0) * _smoothstep(1.0 - (age - 0.12) * (1.0 / 0.14))

        # ---- head
        nod = torch.maximum(_col(state, S_NOD) * torch.exp(-dt / 0.35), torch.clamp(onset * 6.0, 0.0, 1.0))
        ytimer = init * _col(state, S_YAW_TIMER) + fresh * 2.0
        ytimer = ytimer - dt * voice
        turn = ((ytimer <= 0.0) & (onset > 0.02)).to(torch.float32)
        ytgt = _col(state, S_YAW_TGT)
        ytgt = turn * (_col(u, N_YAW_TGT) - 0.5) * 10.0 + (1.0 - turn) * ytgt
        ytgt = ytgt * (1.0 - (1.0 - voice) * _alpha(dt, 5.0))
        ytimer = turn * (1.5 + 3.0 * _col(u, N_YAW_T)) + (1.0 - turn) * torch.clamp(ytimer, min=0.0)

        g = (u[:, N_DRIFT: N_DRIFT + 3] - 0.5) * math.sqrt(12.0)
        # A fresh state starts the drift somewhere in its spread, not at rest.
        drift = init * state[:, S_DRIFT: S_DRIFT + 3] + fresh * (0.8 * self.drift_sigma) * g
        # Speech makes the head livelier: the drift's spread grows with the voice (roll most:
        # people tilt their heads as they talk), so a speaker's roll reads 1.5-4 degrees.
        sigma = self.drift_sigma * (1.0 + voice * self.drift_speech_gain)
        tau = self.drift_tau + voice * (self.drift_tau_speech - self.drift_tau)
        drift = drift - drift * (dt / tau) + sigma * torch.sqrt(2.0 * dt / tau) * g

        yaw, yaw_v = _col(state, S_YAW), _col(state, S_YAW + 1)
        pitch, pitch_v = _col(state, S_YAW + 2), _col(state, S_YAW + 3)
        roll, roll_v = _col(state, S_YAW + 4), _col(state, S_YAW + 5)
        yaw, yaw_v = _spring(yaw, yaw_v, ytgt + _col(drift, 0), 3.0, dt)
        pitch, pitch_v = _spring(pitch, pitch_v, -3.0 * nod + 1.0 * slow + _col(drift, 1), 6.0, dt)
        roll, roll_v = _spring(roll, roll_v, 0.45 * yaw + _col(drift, 2), 3.0, dt)

        breath = init * _col(state, S_BREATH) + fresh * (2.0 * math.pi) * _col(u, N_BREATH_PHASE)
        breath = breath + (2.0 * math.pi * 0.25) * dt * (0.85 + 0.3 * _col(u, N_BREATH_RATE))
        breath = breath - (2.0 * math.pi) * torch.floor(breath * (1.0 / (2.0 * math.pi)))
        sb = torch.sin(breath)

        pose = torch.cat([
            torch.clamp(yaw, -8.0, 8.0),
            torch.clamp(pitch + 0.25 * sb, -6.0, 6.0),
            5.0 * torch.tanh(roll * 0.2),  # soft limit: +-5 degrees
            0.4 * roll,
            1.0 * sb - 0.4 * pitch,
            0.003 * sb + 0.01 * slow,
        ], dim=1)

        # ---- gaze
        scd = init * _col(state, S_SACCADE_CD) + fresh * (0.5 + _col(u, N_SACC_T))
        scd = scd - dt
        strig = (scd <= 0.0).to(torch.float32)
        away = (_col(u, N_SACC_CENTER) > 0.35).to(torch.float32)
        new_gaze = torch.cat([(_col(u, N_SACC_X) - 0.5) * 0.24, (_col(u, N_SACC_Y) - 0.5) * 0.14], dim=1) * away
        gaze_tgt = strig * new_gaze + (1.0 - strig) * state[:, S_GAZE_TGT: S_GAZE_TGT + 2]
        scd = scd + strig * (0.5 + 2.5 * _col(u, N_SACC_T))
        gaze = state[:, S_GAZE: S_GAZE + 2]
        gaze = gaze + _alpha(dt, 0.035) * (gaze_tgt - gaze)
        gx, gy = _col(gaze, 0), _col(gaze, 1)
        eyes = torch.cat([blink, torch.relu(gx), torch.relu(-gx), torch.relu(gy), torch.relu(-gy)], dim=1)

        # ---- blendshapes + emotion
        base = lip_out @ self.lip_map + eyes @ self.eye_map
        gate = 1.0 - closed * self.mouth_open_mask - blink * self.wide_mask
        bs = torch.clamp(base + emotion * gate, 0.0, 1.0)
        motion = torch.cat([bs, pose], dim=1)

        one = torch.ones_like(init)
        state_out = torch.cat([
            lip, cd, age, fast, slow,
            yaw, yaw_v, pitch, pitch_v, roll, roll_v,
            ytgt, ytimer, drift, breath, gaze_tgt, gaze, scd, nod, one, voice,
        ], dim=1)
        return motion, state_out
