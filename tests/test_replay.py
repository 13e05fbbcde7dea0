"""The timed replay's machine (tests/benchmarks/replay.py), on a clock the test moves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "benchmarks"))

import replay

CHUNK = replay.CHUNK_BYTES
ONE_CHUNK_A_SECOND = CHUNK * 8 / 1e9  # Gbit/s


class Clock:
    """time.monotonic and time.sleep of one thread; `now` may be set back to start
    another job at the same moment."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(replay, "time", clock)
    return clock


def test_fetches_queue_on_the_one_link_and_spread_their_cpu_between_chunks(clock):
    fetch = {"period": "2025-01", "scene": "a"}
    costs = {replay.job_key("fetch_scene", fetch): {"network_bytes": 2 * CHUNK, "cpu_s": 3.0}}
    machine = replay.Replay(costs, scale=0.5, gbps=ONE_CHUNK_A_SECOND)
    machine.run("fetch_scene", fetch)
    # two chunks of 1 modelled second each, 1.5 s of CPU after each: 5 s modelled
    assert clock.now == pytest.approx(0.5 * (1 + 1.5 + 1 + 1.5))
    # a second fetch that asks for the link while the first one's chunk is on it waits
    clock.now = 0.0
    machine.link_free = 0.5  # the first fetch's first chunk, sent until 0.5
    machine.transfer(CHUNK)
    assert clock.now == pytest.approx(1.0)


def test_a_masks_host_work_surrounds_its_inference_and_products_take_their_month(clock):
    mask = {"period": "2025-01", "scene": "a"}
    costs = {
        replay.job_key("mask_scene", mask): {"host_s": 2.0, "gpu_s": 3.0},
        replay.job_key("assemble_mosaic", {"period": "2025-01"}): {"host_s": 7.0},
    }
    machine = replay.Replay(costs, scale=0.1, gbps=1.0)
    machine.run("mask_scene", mask)
    assert clock.now == pytest.approx(0.5)
    assert not machine.gpu.locked()
    # the month's products are found whatever their {dates}
    machine.run("assemble_mosaic", {"period": "2025-01", "dates": "2025_01_01_to_2025_01_31"})
    assert clock.now == pytest.approx(0.5 + 0.7)
    # jobs the plan does not count (gates, markers, uploads) take no time
    machine.run("fetch_gate", {"period": "2025-01"})
    assert clock.now == pytest.approx(1.2)
