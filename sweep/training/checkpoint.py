"""A training's state between two steps, as bytes: what a stopped trial resumes from.

It holds the model's and the optimizer's variables (Adam's moments, the moving average, the
step count), the step reached, the curve so far and the losses since its last point. Nothing
else decides what comes next: batch order and shifts are derived from (seed, step). So a
training resumed from a checkpoint ends bitwise identical to one that never stopped, on the
same backend, chain count and CPU.

The bytes are a NumPy .npz (a zip, whose CRC-32s catch a damaged file) with the arrays and
one JSON record; no TensorFlow is needed to read or write them.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass

import numpy as np

from sweep.stats import Accuracy
from sweep.training.config import CurvePoint, TrainConfig

FORMAT = 1  # bumped when the layout changes: an older checkpoint is then refused, not misread


class CheckpointError(Exception):
    """The bytes are not a usable checkpoint (damaged, another format, another configuration)."""


@dataclass(frozen=True)
class Checkpoint:
    config: TrainConfig  # the configuration it trains: a checkpoint never resumes another one
    backend: tuple[str, int]  # the LSTM backend's name and chain count (they decide the rounding)
    step: int  # optimizer steps taken
    curve: tuple[CurvePoint, ...]  # the curve points measured so far
    pending_losses: np.ndarray  # float32 losses of the steps since the last curve point
    train_seconds: float  # so far
    weights: dict[str, np.ndarray]  # the model's variables, by path
    optimizer: dict[str, np.ndarray]  # the optimizer's variables, by path

    def to_bytes(self) -> bytes:
        meta = {
            "format": FORMAT,
            "config": asdict(self.config),
            "backend": list(self.backend),
            "step": self.step,
            "train_seconds": self.train_seconds,
            "curve": [
                {
                    "point": p.point,
                    "val": [p.val.correct, p.val.total],
                    "train_loss": p.train_loss,
                    "train_seconds": p.train_seconds,
                    "train_images": p.train_images,
                }
                for p in self.curve
            ],
            "weights": list(self.weights),
            "optimizer": list(self.optimizer),
        }
        arrays = {f"w{k}": v for k, v in enumerate(self.weights.values())}
        arrays |= {f"o{k}": v for k, v in enumerate(self.optimizer.values())}
        buffer = io.BytesIO()
        np.savez(
            buffer,
            meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
            pending_losses=np.asarray(self.pending_losses, np.float32),
            **arrays,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}  # reading each member checks its CRC-32
            meta = json.loads(arrays["meta"].tobytes())
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"format {meta.get('format')}, not {FORMAT}")
            curve = tuple(
                CurvePoint(p["point"], Accuracy(*p["val"]), p["train_loss"], p["train_seconds"], p["train_images"])
                for p in meta["curve"]
            )
            return cls(
                TrainConfig(**meta["config"]),
                tuple(meta["backend"]),
                meta["step"],
                curve,
                arrays["pending_losses"],
                meta["train_seconds"],
                {path: arrays[f"w{k}"] for k, path in enumerate(meta["weights"])},
                {path: arrays[f"o{k}"] for k, path in enumerate(meta["optimizer"])},
            )
        except CheckpointError:
            raise
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as e:
            raise CheckpointError(f"unreadable ({type(e).__name__}: {e})") from None

    def check_fits(self, config: TrainConfig) -> None:
        """Raise CheckpointError unless it is a checkpoint of exactly this configuration."""
        if self.config != config:
            differing = sorted(k for k, v in asdict(config).items() if asdict(self.config).get(k) != v)
            raise CheckpointError(f"it is of another configuration ({', '.join(differing)} differ)")
