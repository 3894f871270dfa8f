"""Generated test videos: moving shapes on a gradient, so frames differ in time and space."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def synthetic_frame(t: float, width: int, height: int) -> np.ndarray:
    """An RGB frame at time t (seconds): a gradient, a moving circle and a rotating bar."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (x[None, :] * 0.5 + 40 * np.sin(t)).clip(0, 255)
    img[..., 1] = (y * 0.5 + 60).clip(0, 255)
    img[..., 2] = ((x[None, :] + y) * 0.25 + 30 * np.cos(t * 0.7)).clip(0, 255)
    cx = int((0.5 + 0.4 * np.sin(t * 1.3)) * width)
    cy = int((0.5 + 0.4 * np.cos(t * 0.9)) * height)
    cv2.circle(img, (cx, cy), max(4, min(width, height) // 8), (255, 40, 40), -1)
    ang = t * 2.0
    c = (width // 2, height // 2)
    r = min(width, height) // 3
    p2 = (int(c[0] + r * np.cos(ang)), int(c[1] + r * np.sin(ang)))
    cv2.line(img, c, p2, (20, 20, 220), max(2, min(width, height) // 30))
    return img


def write_video(path: Path, seconds: float, fps: float = 30.0, width: int = 160, height: int = 112) -> Path:
    """Write an mp4 (mp4v) of `seconds` at `fps` and return its path."""
    path = Path(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for i in range(int(round(seconds * fps))):
        writer.write(cv2.cvtColor(synthetic_frame(i / fps, width, height), cv2.COLOR_RGB2BGR))
    writer.release()
    return path
