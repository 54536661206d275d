#!/usr/bin/env python3
"""Generate an LJSpeech-shaped corpus for the extraction benchmark (needs numpy).

    OUT/LJSpeech-1.1/
    ├── README
    ├── metadata.csv          ID|transcription|normalized transcription
    └── wavs/LJ0NN-NNNN.wav   mono 16-bit PCM, 22,050 Hz, 1-10 s (mean ~6.5 s, like LJSpeech)

The audio is speech-like on purpose (compressors must work as hard as on real speech): a
wandering pitch with harmonics, a syllable-rate envelope and broadband noise. Zeros or pure
tones would compress 100:1 and make every decompressor look fast.

    python scripts/make_corpus.py OUT [--scale 0.05] [--seed 1]

``--scale 1`` makes all 13,100 clips (~3.7 GB, like the real LJSpeech 1.1); the default 0.05
makes 655 (~190 MB) for a shared machine.
"""

from __future__ import annotations

import argparse
import io
import wave
from pathlib import Path

import numpy as np

RATE = 22050
FULL_COUNT = 13100
TOP = "LJSpeech-1.1"
WORDS = [
    "the",
    "of",
    "printing",
    "in",
    "a",
    "which",
    "was",
    "and",
    "to",
    "art",
    "from",
    "by",
    "with",
    "that",
    "as",
    "were",
    "it",
    "is",
    "for",
    "has",
]


def clip(rng: np.random.Generator, seconds: float) -> bytes:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 120 + 40 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t) + rng.normal(0, 3, n).cumsum() / n
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 9))
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None)
    noise = rng.normal(0, 0.25, n)
    signal = (voiced * syllables + noise * (0.3 + syllables)) * 0.18
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--scale", type=float, default=0.05, help="fraction of 13,100 clips")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    count = max(1, round(FULL_COUNT * args.scale))
    root = args.out / TOP
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    total = 0
    for i in range(count):
        ident = f"LJ{i // 300 + 1:03d}-{i % 300 + 1:04d}"
        data = clip(rng, float(np.clip(rng.normal(6.5, 2.2), 1.0, 10.1)))
        (root / "wavs" / f"{ident}.wav").write_bytes(data)
        total += len(data)
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(5, 20))))
        lines.append(f"{ident}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "README").write_text("Synthetic LJSpeech-shaped corpus for benchmarks.\n")
    print(f"{root}: {count} clips, {total / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
