"""latency.json keeps one measurement per runtime, device, batch size and threads."""
from bench.store import latency
from bench.store.latency import find, measurements, merge

OLD = {"run_id": "a", "device": "cpu", "batch_size": 1, "threads": 1, "exits": [], "budgets": []}


def m(runtime, batch, mean=1.0):
    return {"runtime": runtime, "device": "cpu", "batch_size": batch, "threads": 1,
            "exits": [{"mean_ms": mean}], "budgets": []}


def test_a_file_from_before_is_one_pytorch_measurement():
    assert measurements(OLD) == [{**OLD, "runtime": "pytorch"}]
    assert measurements(None) == [] and measurements({"run_id": "a"}) == []


def test_new_measurements_replace_those_with_their_key_and_keep_the_others():
    first = merge(OLD, [m("onnxruntime", 1), m("pytorch", 64)])
    assert [(x["runtime"], x["batch_size"]) for x in first["measurements"]] == [
        ("pytorch", 1), ("onnxruntime", 1), ("pytorch", 64)]
    assert first["runtime"] == "onnxruntime"  # the first new one on top
    second = merge(first, [m("pytorch", 1, mean=9.0)])
    assert [(x["runtime"], x["batch_size"]) for x in second["measurements"]] == [
        ("onnxruntime", 1), ("pytorch", 64), ("pytorch", 1)]
    assert find(second, "pytorch", "cpu", 1, 1)["exits"][0]["mean_ms"] == 9.0
    assert find(second, "pytorch", "cuda", 1, 1) is None


def test_exit_costs_in_ms_are_cumulative_even_when_a_measurement_is_not():
    """Seen under load: exit 2 timed faster than exit 1. Budgets in ms need non-decreasing
    costs (reaching exit 2 runs exit 1's work too), so an inversion takes the cost before."""
    measured = {"exits": [{"mean_ms": 1.07}, {"mean_ms": 0.96}, {"mean_ms": 2.28}]}
    assert latency.exit_costs_ms(measured) == [1.07, 1.07, 2.28]
    ordered = {"exits": [{"mean_ms": 0.5}, {"mean_ms": 1.0}]}
    assert latency.exit_costs_ms(ordered) == [0.5, 1.0]
