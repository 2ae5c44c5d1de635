import pytest
from fvcore.nn import FlopCountAnalysis


def count_macs(module, *inputs, zero_cost=()) -> int:
    """fvcore's total for ``module(*inputs)``. Ops in ``zero_cost`` are declared free (the
    elementwise work the harness leaves out); any other op fvcore does not know fails the
    test, so an uncounted multiply-add cannot pass silently."""
    analysis = FlopCountAnalysis(module, inputs)
    analysis.set_op_handle(**{op: None for op in zero_cost})
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    total = analysis.total()
    assert not analysis.unsupported_ops(), dict(analysis.unsupported_ops())
    return total


@pytest.fixture
def fvcore_macs():
    return count_macs
