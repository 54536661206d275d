#!/usr/bin/env python3
"""Build registry/demo/LJSpeech-demo.tar.gz: a tiny offline dataset in the LJSpeech layout.

    LJSpeech-demo/
    ├── README.txt
    ├── metadata.csv          ID|transcription|normalized transcription (UTF-8, like LJSpeech)
    └── wavs/LJD001-000N.wav  mono 16-bit PCM, 22,050 Hz, ~1.2 s of synthetic speech-like sound

The audio is a glottal pulse train through three formant resonators with a syllable-rate
envelope: it looks and sounds like voiced speech to tools, and is byte-for-byte reproducible.
Run it again and the archive is identical (fixed mtimes, owners, order, gzip header).
Then update sha256/size in registry/demo.toml (the script prints them).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import random
import struct
import tarfile
import wave
from pathlib import Path

RATE = 22050
TOP = "LJSpeech-demo"
OUT = Path(__file__).resolve().parent.parent / "registry" / "demo" / f"{TOP}.tar.gz"
MTIME = 1_700_000_000

SENTENCES = [
    "Datastage puts a verified copy of the data on fast local disk.",
    "Interrupted downloads resume where they stopped.",
    "Every archive member is checked before it is written.",
    "A staged dataset is marked complete only after every file is in place.",
    "The second run finds the data already there and returns at once.",
]

# (formant Hz, bandwidth Hz) for a few vowels
VOWELS = [
    ((730, 90), (1090, 110), (2440, 170)),  # a
    ((270, 60), (2290, 100), (3010, 170)),  # i
    ((300, 70), (870, 90), (2240, 170)),  # u
    ((530, 80), (1840, 100), (2480, 170)),  # e
    ((570, 80), (840, 90), (2410, 170)),  # o
]


def _resonator(signal: list[float], freq: float, bandwidth: float) -> list[float]:
    r = math.exp(-math.pi * bandwidth / RATE)
    a1, a2 = 2 * r * math.cos(2 * math.pi * freq / RATE), -r * r
    gain = 1 - r
    out, y1, y2 = [], 0.0, 0.0
    for x in signal:
        y = gain * x + a1 * y1 + a2 * y2
        out.append(y)
        y1, y2 = y, y1
    return out


def synth(index: int, seconds: float = 1.2) -> bytes:
    rng = random.Random(index)
    n = int(RATE * seconds)
    f0 = 110 + 25 * index
    syllables = 4 + index % 3
    samples = [0.0] * n
    phase = 0.0
    for s in range(syllables):
        vowel = VOWELS[rng.randrange(len(VOWELS))]
        start, end = s * n // syllables, (s + 1) * n // syllables
        source = []
        for i in range(start, end):
            t = i / RATE
            pitch = f0 * (1 + 0.08 * math.sin(2 * math.pi * 1.5 * t))
            phase += pitch / RATE
            pulse = 1.0 if phase >= 1.0 else 0.0
            phase -= int(phase)
            source.append(pulse + 0.02 * rng.uniform(-1, 1))
        voiced = [0.0] * len(source)
        for freq, bw in vowel:
            for j, v in enumerate(_resonator(source, freq, bw)):
                voiced[j] += v
        for j, v in enumerate(voiced):
            envelope = math.sin(math.pi * j / len(voiced)) ** 2
            samples[start + j] = v * envelope
    peak = max(abs(v) for v in samples) or 1.0
    pcm = struct.pack(f"<{n}h", *(int(0.6 * 32767 * v / peak) for v in samples))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    else:
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))


def main() -> None:
    ids = [f"LJD001-{i + 1:04d}" for i in range(len(SENTENCES))]
    metadata = "".join(f"{i}|{s}|{s}\n" for i, s in zip(ids, SENTENCES)).encode()
    readme = (
        b"LJSpeech-demo: five synthetic clips in the LJSpeech-1.1 layout, made by\n"
        b"scripts/make_demo.py for datastage's offline quickstart. Public domain (CC0).\n"
    )
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, TOP, None)
        _add(tar, f"{TOP}/README.txt", readme)
        _add(tar, f"{TOP}/metadata.csv", metadata)
        _add(tar, f"{TOP}/wavs", None)
        for index, clip in enumerate(ids):
            _add(tar, f"{TOP}/wavs/{clip}.wav", synth(index))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(OUT, "wb") as f,
        gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz,
    ):
        gz.write(raw.getvalue())
    data = OUT.read_bytes()
    print(f'{OUT}\nsize = {len(data)}\nsha256 = "{hashlib.sha256(data).hexdigest()}"')


if __name__ == "__main__":
    main()
