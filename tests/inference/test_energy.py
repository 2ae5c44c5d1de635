"""Energy per image from NVML's counter where there is one, and why not elsewhere."""
import pytest
import torch

from bench.inference.energy import EnergyMeter, energy_per_image, open_meter


class FakeNVML:
    """pynvml's calls the meter makes; the counter grows by 5 mJ per read."""

    class NVMLError(Exception):
        pass

    def __init__(self, fail_read=False):
        self.mj, self.fail_read, self.open = 1000, fail_read, 0

    def nvmlInit(self):
        self.open += 1

    def nvmlShutdown(self):
        self.open -= 1

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return ("uuid", uuid)

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("index", index)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self.fail_read:
            raise self.NVMLError("Not Supported")
        self.mj += 5
        return self.mj


class FakeCuda:
    def current_device(self):
        return 0

    def get_device_properties(self, index):
        return type("Props", (), {"uuid": "1234"})()


def test_the_cpu_has_no_meter_and_says_why():
    meter, why = open_meter(torch.device("cpu"))
    assert meter is None and "no energy counter on cpu" in why


def test_a_gpu_meter_reads_nvml_by_uuid():
    nvml = FakeNVML()
    meter, source = open_meter(torch.device("cuda:0"), nvml=nvml, cuda=FakeCuda())
    assert meter.handle == ("uuid", "GPU-1234") and "NVML" in source
    assert nvml.open == 1
    meter.close()
    assert nvml.open == 0  # every init shut down again


def test_a_gpu_without_the_counter_says_so():
    nvml = FakeNVML(fail_read=True)
    meter, why = open_meter(torch.device("cuda"), nvml=nvml, cuda=FakeCuda())
    assert meter is None and "Not Supported" in why
    assert nvml.open == 0  # NVML released on the way out


def test_energy_per_image_is_the_counter_difference_over_the_images():
    class Counter:
        def __init__(self):
            self.mj = 0.0

        def read(self):
            return self.mj

    meter = Counter()
    ticks = iter(range(100))

    def cheap(x):
        meter.mj += 2.0 * len(x)  # 2 mJ per image

    def costly(x):
        meter.mj += 7.0 * len(x)

    batches = [torch.zeros(3, 1), torch.zeros(2, 1)]
    got = energy_per_image(meter, [cheap, costly], batches, lambda: None, min_seconds=3,
                           clock=lambda: float(next(ticks)))
    assert got == [pytest.approx(2.0), pytest.approx(7.0)]
    assert isinstance(EnergyMeter(FakeNVML(), None).read(), float)
