"""Seeds, the one home for them: every random stream derives from the run seed and names (an image
id, a restart, a step), never from an order or a batch, so results do not depend on either."""
from __future__ import annotations

import hashlib


def derive_seed(*parts) -> int:
    """A 31-bit seed from any parts (run seed, image id, restart): order- and batch-independent."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little") >> 1


def stream_seed(seed: int, *parts) -> int:
    """A 63-bit generator seed for one random stream of an image (its init, a step's dropout)."""
    return int.from_bytes(hashlib.sha256(repr((seed, *parts)).encode()).digest()[:8], "little") >> 1
