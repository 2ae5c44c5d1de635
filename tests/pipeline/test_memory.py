"""bench.pipeline.memory: the trainer's peak-memory measure (psutil's resident set size on
a CPU)."""
import mmap
import time

import psutil
import torch

from bench.pipeline.memory import PeakMemory, rss_bytes


def _fresh_pages(size: int) -> mmap.mmap:
    """``size`` bytes of new anonymous memory, every page written: resident whatever the
    process freed before (a torch tensor may reuse memory the allocator kept from earlier
    tests in the same worker, and then the RSS does not grow)."""
    block = mmap.mmap(-1, size)
    block.write(b"\x01" * size)
    return block


def test_rss_is_the_process_s_resident_set_size():
    rss = rss_bytes()
    assert abs(rss - psutil.Process().memory_info().rss) < 64 * 2 ** 20
    block = _fresh_pages(64 * 2 ** 20)
    assert rss_bytes() - rss > 60 * 2 ** 20
    block.close()


def test_peak_memory_on_cpu_sees_a_large_allocation():
    with PeakMemory(torch.device("cpu")) as memory:
        block = _fresh_pages(64 * 2 ** 20)
        time.sleep(0.05)
        block.close()
    assert 60 <= memory.peak_mib < 200
    assert memory.measure == PeakMemory.CPU_MEASURE and "psutil" in memory.measure


def test_the_peak_is_counted_above_the_baseline_given():
    with PeakMemory(torch.device("cpu"), baseline=rss_bytes() + 2 ** 40) as memory:
        block = torch.ones(2 ** 20)
        del block
    assert memory.peak_mib == 0  # never below nothing
