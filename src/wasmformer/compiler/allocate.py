"""Residual allocation: give every feature a residual dimension (slot) while it is live.

A feature is live from the stage that writes it (0 for the embedding) to its last reader
(the unembedding counts as stage 2L + 1). Features whose live ranges do not overlap share
a slot: this is interval colouring, and the greedy pass in order of write stage uses the
fewest slots possible.

A reused slot must be zero when the next feature is added into it. We clear it
explicitly: the FFN sublayer at or right after the old feature's last read gets one
extra hidden unit, relu(one) * (-old), which adds exactly -old (x + (-x) == 0 in IEEE
arithmetic, and 1 * x == x). The slot is free from the next stage on. A slot that is
never reused is never cleared, so features read by the unembedding cost nothing extra.
"""

from __future__ import annotations

from dataclasses import dataclass

from .program import Feature, Program
from .schedule import Schedule


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one feature lives: its slot, the stage writing it, and the FFN stage (if any)
    whose clear unit zeroes the slot after its last read so another feature can reuse it."""

    feature: Feature
    slot: int
    written: int
    last_read: int
    cleared: int | None


@dataclass(frozen=True, slots=True)
class Allocation:
    placements: tuple[Placement, ...]
    d_model: int

    def slot_map(self) -> dict[Feature, int]:
        return {p.feature: p.slot for p in self.placements}


def allocate(program: Program, schedule: Schedule) -> Allocation:
    written, last_read = _live_ranges(program, schedule)
    order = sorted(program.features, key=lambda f: written[f])  # stable: sources first
    slot_of: dict[Feature, int] = {}
    cleared: dict[Feature, int] = {}
    occupant: list[Feature] = []  # the latest feature in each slot
    for f in order:
        slot = _free_slot(occupant, written[f], last_read, schedule.depth)
        if slot is None:
            slot = len(occupant)
            occupant.append(f)
        else:
            cleared[occupant[slot]] = _clear_stage(last_read[occupant[slot]])
            occupant[slot] = f
        slot_of[f] = slot
    placements = tuple(Placement(f, slot_of[f], written[f], last_read[f], cleared.get(f))
                       for f in program.features)
    return Allocation(placements, len(occupant))


def _live_ranges(program: Program, schedule: Schedule):
    """Write stage and last-read stage of every feature (unread: its write stage)."""
    written = {f: 0 for f in program.sources}
    for op, stage in zip(program.ops, schedule.stages, strict=True):
        for f in op.outputs:
            written[f] = stage
    last_read = dict(written)
    for op, stage in zip(program.ops, schedule.stages, strict=True):
        for f in op.reads:
            last_read[f] = max(last_read[f], stage)
    end = 2 * schedule.depth + 1
    for form in program.logits:
        for f in form.features:
            last_read[f] = end
    return written, last_read


def _clear_stage(last_read: int) -> int:
    """The first FFN stage (even, >= 2) at or after ``last_read``."""
    stage = max(last_read, 1)
    return stage + stage % 2


def _free_slot(occupant: list[Feature], stage: int, last_read, depth: int) -> int | None:
    """The lowest slot whose occupant can be cleared before ``stage``, if any."""
    for slot, old in enumerate(occupant):
        clear = _clear_stage(last_read[old])
        if clear < stage and clear <= 2 * depth:
            return slot
    return None
