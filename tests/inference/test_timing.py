"""bench.inference.timing: timers, per-batch statistics, configurations timed alternately."""
import pytest
import torch

from bench.inference import timing as T


def test_summary_statistics():
    s = T.summarize([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1])
    assert s["median_ms"] == 2.5 and s["mean_ms"] == 2.5
    assert s["p95_ms"] == pytest.approx(3.85) and s["images_per_s"] == pytest.approx(400.0)
    weighted = T.summarize([1.0, 3.0], [3, 1])  # mean weighs images: (3*1 + 1*3) / 4
    assert weighted["mean_ms"] == 1.5


class FakeCuda:
    """torch.cuda's timing surface, recording the calls."""

    def __init__(self):
        self.calls, self.clock = [], 0.0

    def synchronize(self):
        self.calls.append("synchronize")

    def Event(self, enable_timing=False):
        assert enable_timing
        cuda = self

        class Event:
            def record(self):
                cuda.clock += 12.5
                self.at = cuda.clock
                cuda.calls.append("record")

            def elapsed_time(self, end):
                return end.at - self.at

        return Event()


def test_cuda_timer_synchronizes_and_reads_events_in_seconds():
    cuda = FakeCuda()
    timer = T.CudaTimer(cuda)
    timer.start()
    seconds = timer.stop()
    assert cuda.calls == ["synchronize", "record", "record", "synchronize"]
    assert seconds == pytest.approx(0.0125)
    (stats,) = T.time_interleaved([lambda x: None], [torch.zeros(2, 1), torch.zeros(3, 1)],
                                  timer, warmup=0, repeats=1)
    assert stats["median_ms"] == pytest.approx((6.25 + 12.5 / 3) / 2)


def test_runners_are_timed_alternately_batch_by_batch():
    calls = []

    class Clock:
        def start(self):
            pass

        def stop(self):
            return 0.001

    runners = [lambda x, k=k: calls.append((k, len(x))) for k in range(2)]
    out = T.time_interleaved(runners, [torch.zeros(1, 1), torch.zeros(2, 1)], Clock(),
                             warmup=1, repeats=2)
    assert calls == [(0, 1), (1, 1)] + [(0, 1), (1, 1), (0, 2), (1, 2)] * 2
    assert [o["timed_batches"] for o in out] == [4, 4]
