"""Mutated content records (HDiffPatch and zstd patches) are decoded to the right bytes or
refused as `BadInput`: never a crash, another exception, or wrong bytes.

The decoders are C libraries: each run is a child process, so a segfault fails the test
(naming the seed) instead of killing pytest.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import hdiffpatch
import pytest

from imgdiff import _digest
from imgdiff.archive.codec import decode
from imgdiff.archive.format import Record
from imgdiff.archive.pack import patch_compressor
from imgdiff.errors import BadInput
from imgdiff.model import Entry, EntryType

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 5000


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        how = rng.randrange(3)
        at = rng.randrange(len(out))
        if how == 0:
            out[at] = rng.randrange(256)  # a flipped byte
        elif how == 1 and len(out) > 16:
            del out[at : at + rng.randrange(1, 64)]  # bytes cut out
        else:
            out[at:at] = rng.randbytes(rng.randrange(1, 24))  # bytes put in
    return bytes(out)


def fuzz(encoding: str, seed: int, rounds: int) -> dict[str, int]:
    """Decode `rounds` mutations of one good record; counts of what happened."""
    rng = random.Random(seed)
    old = rng.randbytes(40_000)
    changed = bytearray(old)
    for _ in range(60):
        changed[rng.randrange(len(changed))] = rng.randrange(256)
    new = bytes(changed) + b"appended " * 200
    if encoding == "hdiff":
        patch = hdiffpatch.diff(old, new, compression="lzma2", validate=False)
    else:
        patch = patch_compressor(old, len(new)).compress(new)
    entry = Entry("/f", EntryType.FILE, 0o644, 0, 0, len(new), 0, None, None, None, (),
                  _digest.of_bytes(new))  # fmt: skip

    def attempt(data: bytes) -> bytes:
        return decode(Record("/f", encoding, "/b", len(data)), data, entry, lambda _: old, "d")

    assert attempt(patch) == new
    seen = {"decoded": 0, "refused": 0}
    for _ in range(rounds):
        try:
            got = attempt(_mutate(rng, patch))
        except BadInput:
            seen["refused"] += 1
            continue
        assert got == new  # a mutation that still decodes must give NEW's bytes
        seen["decoded"] += 1
    return seen


@pytest.mark.parametrize("encoding", ["hdiff", "patch"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mutated_records_decode_right_or_are_refused_never_crash(encoding: str, seed: int) -> None:
    code = (
        "import json; from tests.test_record_fuzz import fuzz; "
        f"print(json.dumps(fuzz({encoding!r}, {seed}, {ROUNDS})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"seed {seed}: exit {done.returncode}\n{done.stderr[-2000:]}"
    seen = json.loads(done.stdout)
    assert seen["refused"] > 100  # the mutations do reach the decoders' checks
    assert seen["decoded"] + seen["refused"] == ROUNDS
