"""Write ``assets/alarm.wav``: the console's two-tone alarm, made here so nothing is fetched.

Run ``python tools/make_alarm_sound.py`` after changing the tones; the file is committed.
Two alternating tones (like a fire-alarm sounder) carry through a noisy command centre
better than one, and short fades stop each tone clicking when the browser loops the file.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

SAMPLE_RATE = 22_050  # plenty for tones below 1 kHz, and keeps the file small
TONES_HZ = (880.0, 660.0)
TONE_S = 0.25
REPEATS = 3  # 3 × (high, low) = 1.5 s, then the browser loops it
VOLUME = 0.6  # of full scale: loud, without clipping cheap speakers
FADE_S = 0.01

OUT = Path(__file__).resolve().parents[1] / "assets" / "alarm.wav"


def samples() -> list[int]:
    out: list[int] = []
    per_tone = int(SAMPLE_RATE * TONE_S)
    fade = int(SAMPLE_RATE * FADE_S)
    for _ in range(REPEATS):
        for freq in TONES_HZ:
            for i in range(per_tone):
                envelope = min(1.0, i / fade, (per_tone - 1 - i) / fade)
                value = VOLUME * envelope * math.sin(2 * math.pi * freq * i / SAMPLE_RATE)
                out.append(int(value * 32767))
    return out


def write(path: Path = OUT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        data = samples()
        f.writeframes(struct.pack(f"<{len(data)}h", *data))
    return path


if __name__ == "__main__":
    print(write())
