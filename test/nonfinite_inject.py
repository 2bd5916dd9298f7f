"""A corrupt frame on demand, for the non-finite-loss tests: NaN pixels in chosen training forward passes.

`install(calls, rank)` patches BlipForConditionalGeneration.forward so that the listed training calls (1-based,
counted per process, model in train mode only: validation and generation are left alone) get a first image full of
NaN, as a frame that decoded to garbage would. `calls` is a set of numbers or "N-" for every call from N on.

Run as a script it is blip-train with the patch installed, for torchrun:
    BLIP_NAN_CALLS=1 BLIP_NAN_RANK=1 torchrun ... test/nonfinite_inject.py --data_root ... (blip-train flags)
"""

from __future__ import annotations

import os
import sys


def _wanted(calls: str, call: int) -> bool:
    if calls.endswith("-"):
        return call >= int(calls[:-1])
    return str(call) in calls.split(",")


def install(calls: str, rank: int | None = None):
    """Patch the model class; returns the original forward (to restore)."""
    from transformers import BlipForConditionalGeneration

    original = BlipForConditionalGeneration.forward
    counter = {"calls": 0}

    def forward(self, pixel_values=None, *args, **kwargs):
        if self.training:
            counter["calls"] += 1
            this_rank = int(os.environ.get("RANK", "0"))
            if (rank is None or rank == this_rank) and _wanted(calls, counter["calls"]):
                pixel_values = pixel_values.clone()
                pixel_values[0] = float("nan")
        return original(self, pixel_values, *args, **kwargs)

    BlipForConditionalGeneration.forward = forward
    return original


if __name__ == "__main__":
    from blip_train.train import main

    rank_text = os.environ.get("BLIP_NAN_RANK")
    install(os.environ["BLIP_NAN_CALLS"], None if rank_text is None else int(rank_text))
    sys.exit(main(sys.argv[1:]))
