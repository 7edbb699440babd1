"""Training data for the lip model: synthetic speech with exact phoneme timings.

Speech is synthesised through libespeak-ng (ctypes, synchronous mode, phoneme events; many
languages, accents and voice variants) and, for English, through Flite (Debian's ``flite``:
the ``kal`` diphone voice, cut from recordings of a real speaker, and the ``awb``, ``rms`` and
``slt`` statistical voices trained on real read speech, whose spectra are much closer to a
person's than espeak-ng's formant synthesis), and through Kokoro-82M
(:mod:`vcam.graphs.kokoro_tts`: a neural voice trained on people's recordings, mixes of its five
voices, English and the other languages), so every phoneme's start is known exactly. Phonemes become viseme classes
(:data:`vcam.graphs.motion_model.VISEMES`); the audio is augmented (gain, noise, reverb,
band limits) and turned into the runtime's log-mel features (:func:`vcam.runtime.features.log_mel`),
so training sees exactly what the motion graph sees.

Output: shards ``shard_XX.npz`` (espeak-ng and Flite) and ``kokoro_XX.npz`` in the cache
folder (:func:`cache_dir`: ``~/.cache/vcam/lipdata``, or ``$VCAM_CACHE_DIR/lipdata`` where that is
set; outside git) with ``feats (T, N_MELS) float16``,
``labels (T,) int8`` (viseme at the 10 ms slot ``[k, k+1) * 10 ms``) and ``starts (U + 1,)
int64`` utterance offsets. Everything is deterministic given the seed.

    python -m vcam.graphs.lipdata [--utterances N] [--kokoro N] [--out DIR] [--jobs 2]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcam.runtime.features import HOP, SAMPLE_RATE, log_mel
from vcam.graphs.motion_model import VISEMES

#: Raised whenever the shards' contents change, so cached ones are made again (10: the features'
#: tracked level starts at -30 dB, :data:`vcam.runtime.features.LEVEL_INIT`). KOKORO_VERSION likewise.
DATA_VERSION = 10

# --------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------

_EN_SUBJ = ("the baker", "my brother", "a small boy", "Paula", "the old man", "Mister Brown", "our teacher",
            "the pilot", "your mother", "Bob", "a musician", "the police", "the farmer", "every member",
            "the happy puppy", "Pamela", "the woman", "a tall fisherman", "nobody", "the museum guide",
            "she", "he", "we", "they", "you", "I", "Maria", "the doctor", "my boss", "the children")
_EN_VERB = ("bought", "brought", "played", "painted", "moved", "opened", "forgot", "wanted", "picked up",
            "borrowed", "pushed", "found", "watched", "fixed", "made", "lost", "carried", "measured",
            "built", "visited", "emptied", "described", "bumped into", "remembered", "needs", "loves",
            "shows", "will buy", "might open", "has seen", "wrapped", "mopped", "sipped", "poured")
_EN_OBJ = ("a blue box", "the map of Boston", "some bread and butter", "the purple umbrella", "a big bottle",
           "the broken bike", "five apples", "my phone", "a bowl of soup", "the morning paper",
           "a beautiful poem", "the piano", "the mountain path", "a bag of peppers", "the bamboo boat",
           "the whole album", "a warm jumper", "the bottom shelf", "all the maps", "a pot of jam",
           "the old wooden ship", "two yellow bananas", "the movie tickets", "a bunch of flowers",
           "an orange", "the ice cream", "a heavy book", "the garden gate", "his own house", "the keys")
_EN_ADV = ("yesterday", "very quickly", "in the morning", "before lunch", "by mistake", "at the market",
           "on Monday", "after the party", "without a word", "at home", "in the park", "again and again",
           "last summer", "with a smile", "", "", "", "")
_EN_FIXED = (
    "Peter Piper picked a peck of pickled peppers.",
    "Bobby bought a bubble map for the baby.",
    "My mom made meatballs for the museum members.",
    "Five brave boys moved the piano up the stairs.",
    "Please pass me the paper before the bus comes.",
    "I am happy to be here with all of you today.",
    "What time does the shop open on Sunday morning?",
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore.",
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood?",
    "We will meet at the main gate at nine o'clock.",
    "Maybe we should move the meeting to Monday.",
    "Thank you very much for watching, see you next time.",
    "Hello everybody, welcome back to the show.",
    "Well, um, I'm not really sure about that, but maybe.",
    "Oh wow, that is amazing! Absolutely beautiful.",
    "Can you hear me? Is my microphone working?",
    "Let me share my screen and walk you through the numbers.",
    "Our budget for the project is about four million dollars.",
    "Remember, remember, the fifth of November.",
    "Bubbles, bumps and big blue balloons.",
    "Mmm, hmm. Yes. Right. Exactly. No, absolutely not.",
    "Pop, pop, pop went the popcorn in the pot.",
    "Baa baa black sheep, have you any wool?",
    "Father was always ahead of the others on the far path.",
    "Papa, Mama, Bibi, Mimi, Pipo, Bobo.",
    "Who knew the blue moon would bloom so soon?",
    "I think the theatre is three streets away.",
    "Please speak up, the people in the back cannot hear.",
    "The weather today is warm and sunny with a light breeze.",
)
_EN_NUM = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twenty",
           "forty two", "a hundred", "ninety nine", "seventeen", "a thousand")

_OTHER = {
    "es": ("Buenos días, me llamo Pablo y vivo en Barcelona.", "¿Podemos empezar la reunión ahora mismo?",
           "Mi madre compró pan, manzanas y un poco de queso.", "El perro pequeño bebe agua en el patio.",
           "Mañana vamos a la playa con mis primos.", "No me gusta nada la música muy alta.",
           "Por favor, abre la puerta de la biblioteca.", "La mamá de Paula prepara una paella buenísima.",
           "Hace mucho calor en el mes de agosto.", "Muchas gracias por venir, hasta pronto."),
    "de": ("Guten Morgen, ich möchte bitte ein Brot kaufen.", "Mein Bruder baut ein Boot aus Holz.",
           "Morgen besuchen wir die Oma in München.", "Bitte machen Sie das Fenster auf.",
           "Die Mäuse spielen immer im Keller.", "Wir haben viel Spaß beim Wandern gehabt.",
           "Können Sie mir bitte den Weg zum Bahnhof zeigen?", "Papa bringt Blumen für Mama mit.",
           "Der Himmel ist heute blau und wolkenlos.", "Vielen Dank und bis bald."),
    "fr": ("Bonjour, je m'appelle Pierre et j'habite à Paris.", "Mon petit frère mange une pomme.",
              "Pouvez-vous m'aider à porter ce bagage?", "Le boulanger prépare le pain très tôt.",
              "Nous allons au musée demain matin.", "Il fait beau, profitons du beau temps.",
              "Maman a acheté des bonbons pour le bébé.", "Combien coûte ce beau bouquet de fleurs?",
              "Merci beaucoup, à bientôt mes amis.", "Où est la boulangerie la plus proche?"),
    "it": ("Buongiorno, mi chiamo Marco e abito a Milano.", "Per favore, mi passi il pane e il burro?",
           "Il bambino mangia una mela rossa.", "Domani andiamo al mare con la mamma.",
           "Questa pizza è buonissima, complimenti al cuoco.", "Il papà compra un bel pallone blu.",
           "Mi piace molto ascoltare la musica.", "Ci vediamo alle nove davanti al museo.",
           "Grazie mille e buona serata a tutti.", "Quanto costa questo bellissimo ombrello?"),
    "sv": ("God morgon, jag heter Maja och bor i Malmö.", "Pappa bakar bullar i köket.",
           "Vi ska åka till mormor på måndag.", "Kan du öppna fönstret, tack?",
           "Min bror spelar piano varje kväll.", "Det var en mycket vacker sommar.",
           "Tack så mycket och välkommen tillbaka."),
    "ru": ("Доброе утро, меня зовут Борис.", "Мама мыла раму, а папа читал.",
           "Мы пойдём в парк после обеда.", "Пожалуйста, передайте мне хлеб и масло.",
           "Погода сегодня очень хорошая.", "Большое спасибо, до встречи."),
    "ja": ("おはようございます。わたしのなまえはまりです。", "ぱぱとままはまいにちほんをよみます。",
           "あしたはうみへいきましょう。", "このみせのぱんはとてもおいしいです。",
           "ありがとうございます。またあいましょう。", "ぼくはまいあさぶたにくをたべます。"),
    "pt-br": ("Bom dia, meu nome é Paulo e moro em Brasília.", "A mamãe comprou pão e manteiga.",
              "Vamos para a praia amanhã de manhã.", "Muito obrigado, até breve."),
    "nl": ("Goedemorgen, mijn naam is Pim.", "Mama bakt brood en papa maakt soep.",
           "Morgen gaan we met de boot naar Amsterdam.", "Dank je wel en tot ziens."),
}

_SYL_C = ("p", "b", "m", "f", "v", "t", "d", "n", "s", "z", "k", "g", "l", "r", "w", "sh", "ch", "th", "h", "y")
_SYL_V = ("a", "ee", "oo", "o", "ay", "i", "e", "u", "ah", "oh", "ow", "ai")


def english_text(rng: np.random.Generator) -> str:
    """One to three English sentences: generated, fixed tongue-twisters, or nonsense syllables."""
    parts = []
    for _ in range(int(rng.integers(1, 4))):
        r = rng.random()
        if r < 0.55:
            s = f"{rng.choice(_EN_SUBJ)} {rng.choice(_EN_VERB)} {rng.choice(_EN_OBJ)} {rng.choice(_EN_ADV)}".strip()
            if rng.random() < 0.3:
                s = f"{s} and {rng.choice(_EN_VERB)} {rng.choice(_EN_OBJ)}"
            end = "?" if rng.random() < 0.15 else ("!" if rng.random() < 0.1 else ".")
            parts.append(s[0].upper() + s[1:] + end)
        elif r < 0.8:
            parts.append(str(rng.choice(_EN_FIXED)))
        elif r < 0.9:
            nums = " ".join(str(rng.choice(_EN_NUM)) for _ in range(int(rng.integers(2, 6))))
            parts.append(nums.capitalize() + ".")
        else:
            syl = [str(rng.choice(_SYL_C)) + str(rng.choice(_SYL_V)) for _ in range(int(rng.integers(2, 7)))]
            parts.append(" ".join(syl) + ".")
    return " ".join(parts)


def other_text(lang: str, rng: np.random.Generator) -> str:
    """One to two sentences of ``lang`` (a key of the built-in corpus)."""
    pool = _OTHER[lang]
    return " ".join(str(rng.choice(pool)) for _ in range(int(rng.integers(1, 3))))


# --------------------------------------------------------------------------------------
# espeak-ng through ctypes
# --------------------------------------------------------------------------------------


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4


class Espeak:
    """libespeak-ng in synchronous mode with phoneme events. One per process."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self._lib = ctypes.CDLL(name)
        except OSError as e:
            raise RuntimeError(f"libespeak-ng not found ({e}); install espeak-ng (apt install espeak-ng)") from None
        self.sample_rate = int(self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 200, None,
                                                          _INITIALIZE_PHONEME_EVENTS))
        if self.sample_rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._cb = _CALLBACK(self._on_synth)
        self._lib.espeak_SetSynthCallback(self._cb)

    def _on_synth(self, wav, n, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                self._events.append((ev.id.split(b"\0")[0].decode("utf-8", "replace"), int(ev.sample)))
            i += 1
        return 0

    def synth(self, text: str, voice: str, rate: int = 175, pitch: int = 50, pitch_range: int = 50):
        """Speak ``text``: ``(pcm (n,) float32 at sample_rate, [(phoneme, start_sample), ...])``."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}")
        self._lib.espeak_SetParameter(_RATE, int(rate), 0)
        self._lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        self._lib.espeak_SetParameter(_RANGE, int(pitch_range), 0)
        self._lib.espeak_SetParameter(_VOLUME, 100, 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        self._lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        pcm = (np.concatenate(self._chunks).astype(np.float32) / 32768.0) if self._chunks else np.zeros(0, np.float32)
        return pcm, list(self._events)


# --------------------------------------------------------------------------------------
# Phonemes -> visemes
# --------------------------------------------------------------------------------------

_V = {name: i for i, name in enumerate(VISEMES)}
_STOPS = set("pbtdkgcqʔ")


def viseme_of(ph: str) -> int:
    """Viseme class index of an espeak-ng phoneme mnemonic (any language)."""
    p = ph.strip()
    if not p or p[0] in "_|;:%=,'" or p in ("#",):
        return _V["sil"]
    base = p.lstrip("'%,=")
    if not base:
        return _V["sil"]
    c0 = base[0]
    if c0 in "pbm":
        return _V["PBM"]
    if c0 in "fv" or base.startswith(("pf", "B")):
        return _V["FV"]
    if c0 in "wuUy" or base.startswith(("W", "Y", "u", "8", "@U")):
        return _V["U"]
    if base.startswith(("oU", "o", "O", "Q")):
        return _V["O"]
    if c0 in "aA&V0":  # en-us "0" is the LOT vowel, open and unrounded
        return _V["A"]
    if c0 in "eE@3":
        return _V["E"]
    if c0 in "iIj" or base.startswith("i"):
        return _V["I"]
    return _V["C"]


#: Flite's US English phones (CMU set, lower case) -> viseme names. Rounded vowels and W go
#: to U (close) or O (open); open unrounded vowels and the diphthongs that start open (AY, AW) to A;
#: mid vowels and schwa to E; close front vowels and Y to I; other consonants to C.
_FLITE_VISEME = {"pau": "sil", "h#": "sil", "brth": "sil", "p": "PBM", "b": "PBM", "m": "PBM", "f": "FV", "v": "FV",
                 "w": "U", "uw": "U", "uh": "U", "ow": "O", "oy": "O", "ao": "O", "aw": "A",
                 "aa": "A", "ae": "A", "ah": "A", "ay": "A", "eh": "E", "er": "E", "ey": "E", "ax": "E",
                 "axr": "E", "ih": "I", "iy": "I", "y": "I"}


def flite_viseme_of(ph: str) -> int:
    """Viseme class index of a Flite phone name."""
    return _V[_FLITE_VISEME.get(ph.strip().lower(), "C")]


class Flite:
    """The ``flite`` program: English speech with each phone's end time (``-psdur``)."""

    VOICES = ("kal16", "awb", "rms", "slt")

    def __init__(self, exe: str = "flite") -> None:
        import shutil

        self.exe = shutil.which(exe)
        if self.exe is None:
            raise RuntimeError("flite not found; install it (apt install flite)")

    def synth(self, text: str, voice: str, stretch: float = 1.0, f0_mean: float | None = None,
              f0_std: float | None = None) -> tuple[np.ndarray, int, list[tuple[str, float, float]]]:
        """Speak ``text``: ``(pcm (n,) float32, sample_rate, [(phone, start_s, end_s), ...])``."""
        import subprocess
        import tempfile
        import wave

        cmd = [self.exe, "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}"]
        if f0_mean is not None:
            cmd += ["--setf", f"int_f0_target_mean={f0_mean:.1f}"]
        if f0_std is not None:
            cmd += ["--setf", f"int_f0_target_stddev={f0_std:.1f}"]
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "out.wav"
            r = subprocess.run(cmd + ["-psdur", "-t", text, "-o", str(wav)], capture_output=True, text=True)
            if r.returncode != 0 or not wav.exists():
                raise RuntimeError(f"flite failed on {text!r}: {r.stderr.strip()[-200:]}")
            with wave.open(str(wav)) as w:
                sr = w.getframerate()
                pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0
        phones, t0 = [], 0.0
        for tok in r.stdout.split():
            name, _, end = tok.rpartition(":")
            try:
                t1 = float(end)
            except ValueError:
                continue
            phones.append((name, t0, t1))
            t0 = t1
        return pcm, sr, phones


def _stop_closure_starts(pcm: np.ndarray, segs: list[list], sr: int) -> None:
    """espeak's stop events mark the burst; move a stop's start back over its silent closure."""
    fr = max(1, sr // 200)  # 5 ms
    n = len(pcm) // fr
    if n == 0:
        return
    db = 10 * np.log10(np.mean(pcm[: n * fr].astype(np.float64).reshape(n, fr) ** 2, axis=1) + 1e-12)
    quiet = db < (np.percentile(db, 95) - 40.0)
    for i in range(1, len(segs)):
        name, start, _ = segs[i]
        if not name or name.lstrip("'%,=")[:1] not in _STOPS:
            continue
        k = start // fr - 1
        lim = max(segs[i - 1][1] // fr + 2, start // fr - 20)  # at most 100 ms, keep 10 ms of the previous
        while k >= lim and quiet[k]:
            k -= 1
        new = (k + 1) * fr
        if new < start:
            segs[i][1] = new
            segs[i - 1][2] = new


# --------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------


def _colored_noise(n: int, rng: np.random.Generator, kind: int) -> np.ndarray:
    w = rng.standard_normal(n)
    if kind == 1:  # pink-ish
        spec = np.fft.rfft(w)
        f = np.arange(len(spec)) + 1.0
        w = np.fft.irfft(spec / np.sqrt(f), n)
    elif kind == 2:  # brown-ish (hum, rumble)
        w = np.cumsum(w)
        w -= np.convolve(w, np.ones(401) / 401, mode="same")
    return (w / (np.std(w) + 1e-9)).astype(np.float32)


def _fft_filter(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
    g = 1.0 / (1.0 + (lo / np.maximum(f, 1.0)) ** 4) / (1.0 + (f / hi) ** 8)
    return np.fft.irfft(spec * g, len(x)).astype(np.float32)


def _mix_voices(n: int, pool: list[np.ndarray], rng: np.random.Generator, count: tuple[int, int],
                gain_lo: float, overhang: bool) -> np.ndarray:
    """``(n,) float32``: ``count`` (lo, hi exclusive) utterances of ``pool`` at random offsets,
    each at unit RMS times a gain in ``gain_lo..1``; ``overhang``: an utterance may start up to
    its whole length before the clip (else half of it)."""
    out = np.zeros(n, np.float32)
    for _ in range(int(rng.integers(*count))):
        v = pool[int(rng.integers(0, len(pool)))]
        v = v / (np.sqrt(np.mean(v ** 2)) + 1e-9) * rng.uniform(gain_lo, 1.0)
        pos = int(rng.integers(-len(v) + 1 if overhang else -len(v) // 2, n))
        a, b = max(pos, 0), min(pos + len(v), n)
        if b > a:
            out[a:b] += v[a - pos: b - pos]
    return out


def _babble(n: int, pool: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Background voices: 2-6 other utterances at random offsets, ``(n,) float32`` of unit RMS."""
    out = _mix_voices(n, pool, rng, (2, 7), 0.5, overhang=False)
    return out / (np.sqrt(np.mean(out ** 2)) + 1e-9)


def _clicks(n: int, rng: np.random.Generator) -> np.ndarray:
    """Applause / keyboard / mouth clicks: short decaying noise bursts, ``(n,) float32`` of unit RMS."""
    out = np.zeros(n, np.float32)
    rate = rng.uniform(2.0, 40.0)
    for _ in range(int(rate * n / SAMPLE_RATE)):
        ln = int(rng.uniform(0.003, 0.03) * SAMPLE_RATE)
        pos = int(rng.integers(0, max(1, n - ln)))
        out[pos: pos + ln] += (rng.standard_normal(ln) * np.exp(-np.arange(ln) / (ln / 4)) * rng.uniform(0.2, 1.0))
    if rng.random() < 0.5:
        out = _fft_filter(out, rng.uniform(200, 1500), rng.uniform(3000, 7500))
    return out / (np.sqrt(np.mean(out ** 2)) + 1e-9)


def _crowd(n: int, pool: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A crowd or a room of talkers: 8-20 voices, muffled, ``(n,) float32`` of unit RMS."""
    out = _fft_filter(_mix_voices(n, pool, rng, (8, 21), 0.3, overhang=True),
                      rng.uniform(60, 200), rng.uniform(1500, 4000))
    return out / (np.sqrt(np.mean(out ** 2)) + 1e-9)


def _applause(n: int, rng: np.random.Generator) -> np.ndarray:
    """Applause or cheering: dense short claps, ``(n,) float32`` of unit RMS."""
    out = np.zeros(n, np.float32)
    for _ in range(int(rng.uniform(60, 300) * n / SAMPLE_RATE)):
        ln = int(rng.uniform(0.004, 0.015) * SAMPLE_RATE)
        pos = int(rng.integers(0, max(1, n - ln)))
        out[pos: pos + ln] += rng.standard_normal(ln) * np.exp(-np.arange(ln) / (ln / 3)) * rng.uniform(0.3, 1.0)
    out = _fft_filter(out, rng.uniform(300, 1200), rng.uniform(4000, 7900))
    return out / (np.sqrt(np.mean(out ** 2)) + 1e-9)


def _hum(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    h = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 6))
    return (h / (np.sqrt(np.mean(h ** 2)) + 1e-9)).astype(np.float32)


def augment(x: np.ndarray, rng: np.random.Generator, pool: list[np.ndarray] | None = None) -> np.ndarray:
    """Reverb, band limits, background (noise, voices, a crowd, clicks, applause, hum) at a random
    SNR, gain of +-20 dB.

    ``x`` is ``(n,) float32`` at 16 kHz; ``pool`` holds other utterances for background voices.
    """
    x = x.astype(np.float32)
    if rng.random() < 0.3:  # small room: exponentially decaying noise tail
        rt60 = rng.uniform(0.15, 0.7)
        n_ir = int(rt60 * SAMPLE_RATE)
        t = np.arange(n_ir) / SAMPLE_RATE
        ir = rng.standard_normal(n_ir) * np.exp(-6.9 * t / rt60)
        ir[0] = 0.0
        ir *= rng.uniform(0.1, 0.5) / np.sqrt(np.sum(ir ** 2) + 1e-9)
        ir[0] = 1.0
        x = np.fft.irfft(np.fft.rfft(x, len(x) + n_ir) * np.fft.rfft(ir, len(x) + n_ir))[: len(x)].astype(np.float32)
    r = rng.random()
    if r < 0.15:
        x = _fft_filter(x, 300.0, 3400.0)  # telephone
    elif r < 0.35:
        x = _fft_filter(x, rng.uniform(40, 200), rng.uniform(3500, 8000))
    if rng.random() < 0.15:  # mild clipping / saturation
        x = np.tanh(x * rng.uniform(1.5, 4.0)) / np.tanh(rng.uniform(1.5, 4.0))
    speech = x[np.abs(x) > 1e-4]
    rms = np.sqrt(np.mean(speech ** 2) + 1e-12) if len(speech) else 1e-3
    target_rms = 10 ** (rng.uniform(-42, -12) / 20)  # speech RMS: whispering-quiet .. loud (gain +-20 dB)
    x = x * (target_rms / rms)
    n = len(x)
    bg = np.zeros(n, np.float32)
    if rng.random() < 0.6:
        bg += _colored_noise(n, rng, int(rng.integers(0, 3))) * 10 ** (-rng.uniform(3, 45) / 20)
    if pool and rng.random() < 0.35:  # a crowd or other talkers: the mouth stays shut in pauses
        bg += _babble(n, pool, rng) * 10 ** (-rng.uniform(4, 30) / 20)
    if rng.random() < 0.2:
        bg += _clicks(n, rng) * 10 ** (-rng.uniform(0, 30) / 20)
    if pool and len(pool) >= 4 and rng.random() < 0.15:
        bg += _crowd(n, pool, rng) * 10 ** (-rng.uniform(0, 20) / 20)
    if rng.random() < 0.08:
        bg += _applause(n, rng) * 10 ** (-rng.uniform(0, 20) / 20)
    if rng.random() < 0.1:
        bg += _hum(n, rng) * 10 ** (-rng.uniform(15, 40) / 20)
    x = x + bg * target_rms + rng.standard_normal(n).astype(np.float32) * target_rms * 1e-3
    return np.clip(x, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------
# Utterances
# --------------------------------------------------------------------------------------

_EN_VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan")
_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5",
             "+klatt", "+klatt2", "+Andy", "+Annie", "+Michael", "+belinda", "+steph", "+edward")


@dataclass
class Utterance:
    feats: np.ndarray  # (T, N_MELS) float32
    labels: np.ndarray  # (T,) int8
    meta: dict


def _resample_to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if sr == SAMPLE_RATE:
        return x.astype(np.float32)
    g = np.gcd(sr, SAMPLE_RATE)
    return resample_poly(x, SAMPLE_RATE // g, sr // g).astype(np.float32)


#: Shares of the utterances: Flite English, espeak-ng English, espeak-ng other languages.
FLITE_SHARE, ESPEAK_ENGLISH_SHARE = 0.5, 0.2


def make_utterance(es: Espeak, rng: np.random.Generator, variants: tuple[str, ...],
                   pool: list[np.ndarray] | None = None, flite: Flite | None = None) -> Utterance:
    """Synthesise, label, augment and featurise one random utterance.

    Without ``flite`` every utterance comes from espeak-ng (English or another language).

    ``pool`` (other utterances' clean 16 kHz audio, for background voices) gets this one added.
    """
    r = rng.random()
    if flite is not None and r < FLITE_SHARE:
        voice = str(rng.choice(Flite.VOICES))
        text = english_text(rng)
        stretch = float(rng.uniform(0.75, 1.45))
        base_f0 = {"kal16": 105.0, "awb": 110.0, "rms": 100.0, "slt": 170.0}[voice]
        pcm, sr, phones = flite.synth(text, voice, stretch, base_f0 * rng.uniform(0.8, 1.3),
                                      base_f0 * rng.uniform(0.05, 0.25))
        segs = [[name, int(round(a * sr)), int(round(b * sr))] for name, a, b in phones]
        viseme = flite_viseme_of
        rate = int(round(175 / stretch))
        voice = "flite-" + voice
    else:
        if r < FLITE_SHARE + ESPEAK_ENGLISH_SHARE:
            voice = str(rng.choice(_EN_VOICES))
            text = english_text(rng)
        else:
            voice = str(rng.choice(list(_OTHER)))
            text = other_text(voice, rng)
        voice += str(rng.choice(variants))
        rate = int(rng.uniform(120, 260))
        pitch = int(rng.uniform(20, 80))
        prange = int(rng.uniform(20, 90))
        pcm, events = es.synth(text, voice, rate, pitch, prange)
        sr = es.sample_rate
        segs = [[name, start, 0] for name, start in events]
        for i in range(len(segs)):
            segs[i][2] = segs[i + 1][1] if i + 1 < len(segs) else len(pcm)
        _stop_closure_starts(pcm, segs, sr)
        viseme = viseme_of
    return _labelled(_resample_to_16k(pcm, sr), [(viseme(n), s / sr, e / sr) for n, s, e in segs], rng, pool,
                     {"voice": voice, "rate": rate, "text": text})[0]


def _labelled(x: np.ndarray, segs: list[tuple[int, float, float]], rng: np.random.Generator,
              pool: list[np.ndarray] | None, meta: dict, copies: int = 1) -> list[Utterance]:
    """Pad ``x`` (``(n,) float32`` speech at 16 kHz) with silence, label its 10 ms slots from
    ``segs`` (viseme index, start s, end s), augment and featurise it, ``copies`` times with
    different padding and augmentation; ``pool`` (background voices) gets the clean speech."""
    out = []
    for _ in range(copies):
        pad_a = int(rng.uniform(0.05, 1.6) * SAMPLE_RATE)
        pad_b = int(rng.uniform(0.05, 1.6) * SAMPLE_RATE)
        y = np.concatenate([np.zeros(pad_a, np.float32), x, np.zeros(pad_b, np.float32)])
        t_frames = len(y) // HOP
        labels = np.zeros(t_frames, np.int8)
        centers = (np.arange(t_frames) + 0.5) * HOP  # sample index at 16 kHz
        for v, s, e in segs:
            labels[(centers >= pad_a + s * SAMPLE_RATE) & (centers < pad_a + e * SAMPLE_RATE)] = v
        y = augment(y, rng, pool)
        feats = log_mel(y)
        out.append(Utterance(feats, labels[: len(feats)], meta))
    if pool is not None:
        pool.append(x.copy())
        del pool[:-24]
    return out


#: Kokoro utterances: share in English (the rest: the other languages; 0.7 before KOKORO_VERSION 3,
#: see the README), speaking rates.
KOKORO_ENGLISH_SHARE, KOKORO_SPEED = 0.9, (0.8, 1.3)
_KOKORO_ENGLISH = ("en-us", "en-us", "en-us", "en-gb-x-rp")


def make_kokoro_utterances(kokoro, rng: np.random.Generator, pool: list[np.ndarray] | None = None,
                           copies: int = 2) -> list[Utterance]:
    """One random utterance spoken by Kokoro-82M (a :class:`vcam.graphs.kokoro_tts.Kokoro`) in a
    random mix of one or two of its voices, labelled and featurised ``copies`` times with
    different padding and augmentation."""
    from vcam.graphs.kokoro_tts import SAMPLE_RATE as KOKORO_RATE

    if rng.random() < KOKORO_ENGLISH_SHARE:
        lang, text = str(rng.choice(_KOKORO_ENGLISH)), english_text(rng)
    else:
        lang = str(rng.choice(list(_OTHER)))
        text = other_text(lang, rng)
    names = sorted(kokoro.voices)
    picked = rng.choice(names, size=int(rng.integers(1, 3)), replace=False)
    weights = {str(v): float(rng.uniform(0.2, 1.0)) for v in picked}
    speed = float(rng.uniform(*KOKORO_SPEED))
    pcm, segs, _ = kokoro.synth(text, lang, weights, speed)
    meta = {"voice": "kokoro-" + "+".join(f"{v}:{w:.2f}" for v, w in weights.items()), "lang": lang,
            "rate": round(speed, 3), "text": text}
    return _labelled(_resample_to_16k(pcm, KOKORO_RATE), [(_V[v], a, b) for v, a, b in segs], rng, pool, meta,
                     copies)


def _valid_variants(es: Espeak) -> tuple[str, ...]:
    ok = []
    for v in _VARIANTS:
        try:
            es.synth("a", "en-us" + v)
            ok.append(v)
        except RuntimeError:
            pass
    return tuple(ok)


def make_shard(index: int, n_utts: int, out_dir: Path, seed: int, kind: str = "shard") -> Path:
    """Make shard ``index`` of ``n_utts`` utterances (deterministic from ``seed`` and ``index``).

    ``kind`` ``"shard"``: espeak-ng and Flite; ``"kokoro"``: Kokoro-82M, each utterance in two
    augmentations (so ``2 * n_utts`` rows of utterances)."""
    rng = np.random.default_rng([seed, index] if kind == "shard" else [seed, index, 7])
    feats, labels, starts, metas, pool = [], [], [0], [], []
    if kind == "kokoro":
        from vcam.graphs.kokoro_tts import Kokoro

        kokoro = Kokoro(threads=1)
        make = lambda: make_kokoro_utterances(kokoro, rng, pool)  # noqa: E731
    else:
        es = Espeak()
        flite = Flite()
        variants = _valid_variants(es)
        make = lambda: [make_utterance(es, rng, variants, pool, flite)]  # noqa: E731
    for _ in range(n_utts):
        for u in make():
            feats.append(u.feats.astype(np.float16))
            labels.append(u.labels)
            starts.append(starts[-1] + len(u.labels))
            metas.append(u.meta)
    path = out_dir / f"{kind}_{index:02d}.npz"
    tmp = out_dir / f"{kind}_{index:02d}.tmp.npz"
    np.savez(tmp, feats=np.concatenate(feats), labels=np.concatenate(labels), starts=np.array(starts, np.int64))
    tmp.replace(path)
    (out_dir / f"{kind}_{index:02d}.json").write_text(json.dumps(metas[:50], ensure_ascii=False, indent=0))
    return path


def _shard_worker(args):
    return make_shard(*args)


#: Kokoro-82M utterances in the training data (each in two augmentations) and their shards. Kokoro
#: is the slow part of making the data: 1.1-1.6 s per utterance on 2 cores with the faster
#: convolutions (:func:`vcam.graphs.kokoro_tts.conv_integer_as_matmul`). 480 of them with 3000
#: espeak-ng/Flite utterances took 14-23 minutes for the whole training on 2 cores; 576 scored no
#: better beyond the noise of retraining.
KOKORO_UTTERANCES, KOKORO_SHARDS, KOKORO_VERSION = 480, 10, 3


@dataclass(frozen=True)
class _Plan:
    paths: list[Path]
    stamp_path: Path
    stamp: dict
    work: list[tuple]  # make_shard arguments of the shards to make; empty when all are cached


def _plan(kind: str, version: int, out_dir: Path, n_utts: int, shards: int, seed: int, force: bool) -> _Plan:
    stamp = {"version": version, "n_utts": n_utts, "shards": shards, "seed": seed, "visemes": list(VISEMES)}
    stamp_path = out_dir / ("settings.json" if kind == "shard" else f"{kind}_settings.json")
    paths = [out_dir / f"{kind}_{i:02d}.npz" for i in range(shards)]
    if (not force and stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp
            and all(p.exists() for p in paths)):
        return _Plan(paths, stamp_path, stamp, [])
    per = [n_utts // shards + (1 if i < n_utts % shards else 0) for i in range(shards)]
    return _Plan(paths, stamp_path, stamp, [(i, per[i], out_dir, seed, kind) for i in range(shards)])


def _make(plans: list[_Plan], jobs: int) -> None:
    """Make every planned shard in one pool, the slowest kind first (so the quick shards fill the
    last gaps), then write each kind's settings stamp."""
    pending = [p for p in plans if p.work]
    if not pending:
        return
    for p in pending:
        p.stamp_path.unlink(missing_ok=True)
    # Every shard in a fresh process: libespeak-ng keeps state between utterances that outlives
    # re-initialising it, so a shard made after another in the same process came out different
    # (whichever worker happened to take it), and the weights did not always reproduce.
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(max(1, jobs), maxtasksperchild=1) as pool:
        for path in pool.imap_unordered(_shard_worker, [w for p in pending for w in p.work]):
            print(f"  {path.name}", file=sys.stderr, flush=True)
    for p in pending:
        p.stamp_path.write_text(json.dumps(p.stamp))


def cache_dir() -> Path:
    """Where the shards go by default, created if missing: ``lipdata`` in vcam's cache folder
    (:func:`vcam.avatar.cache.cache_dir`: ``$VCAM_CACHE_DIR``, else ``~/.cache/vcam`` on Linux)."""
    from vcam.avatar import cache

    return cache.cache_dir("lipdata")


def build(out_dir: Path | None = None, n_utts: int = 3000, shards: int = 8, jobs: int = 2, seed: int = 1234,
          force: bool = False, kokoro_utts: int = KOKORO_UTTERANCES,
          kokoro_shards: int = KOKORO_SHARDS) -> tuple[list[Path], list[Path]]:
    """Make (or reuse, when the settings match) the espeak-ng + Flite shards and the Kokoro shards;
    returns the paths of each (no Kokoro shards for ``kokoro_utts`` 0). ``out_dir``: default
    :func:`cache_dir`."""
    out_dir = cache_dir() if out_dir is None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    mixed = _plan("shard", DATA_VERSION, out_dir, n_utts, shards, seed, force)
    kokoro = (_plan("kokoro", KOKORO_VERSION, out_dir, kokoro_utts, kokoro_shards, seed, force)
              if kokoro_utts > 0 else None)
    _make([kokoro, mixed] if kokoro is not None else [mixed], jobs)
    return mixed.paths, kokoro.paths if kokoro is not None else []


def load(paths: list[Path]):
    """Concatenate shards: ``feats (T, N_MELS) float16, labels (T,) int8, starts (U + 1,) int64``."""
    feats, labels, starts, off = [], [], [0], 0
    for p in paths:
        d = np.load(p)
        feats.append(d["feats"])
        labels.append(d["labels"])
        starts.extend((d["starts"][1:] + off).tolist())
        off += len(d["labels"])
    return np.concatenate(feats), np.concatenate(labels), np.array(starts, np.int64)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for the shards (default: lipdata in vcam's cache folder, $VCAM_CACHE_DIR or ~/.cache/vcam)")
    ap.add_argument("--utterances", type=int, default=3000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--kokoro", type=int, default=KOKORO_UTTERANCES, help="Kokoro-82M utterances (0: none)")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    mixed, kokoro = build(a.out, a.utterances, a.shards, a.jobs, a.seed, a.force, a.kokoro)
    f, lab, st = load(mixed + kokoro)
    counts = np.bincount(lab.astype(np.int64), minlength=len(VISEMES))
    print(f"{len(st) - 1} utterances, {len(lab) / 100 / 3600:.2f} h; visemes: "
          + ", ".join(f"{v} {c / len(lab):.1%}" for v, c in zip(VISEMES, counts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
