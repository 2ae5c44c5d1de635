"""bench.evaluate.accuracy: anytime top-1 and top-k per exit, hand-computed."""
import pytest
import torch

from bench import evaluate as ev

# 2 exits, 4 samples, 3 classes; targets [0, 1, 2, 0]
TINY = torch.tensor([
    [[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 2.0, 0.0], [0.0, 1.0, 2.0]],  # argmax 0,1,1,2 -> 2/4
    [[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [2.0, 1.0, 0.0]],  # argmax 0,1,2,0 -> 4/4
])
TINY_Y = torch.tensor([0, 1, 2, 0])


def test_anytime_and_topk_hand_computed():
    assert ev.anytime_accuracy(TINY, TINY_Y) == [50.0, 100.0]
    assert ev.anytime_accuracy(list(TINY.half()), TINY_Y) == [50.0, 100.0]  # list of [M, C], fp16
    # top-2 of exit 1: {0,1} {1,2} {1,0} {2,1} vs targets 0 1 2 0 -> samples 2, 3 miss
    assert ev.topk_accuracy(TINY, TINY_Y, 2) == [50.0, 100.0]
    # 6 classes, target ranked 6th for sample 0, 5th for sample 1, 1st for samples 2, 3
    six = torch.tensor([[[0.0, 5, 4, 3, 2, 1], [1.0, 5, 4, 3, 2, 0],
                         [0.0, 0, 9, 0, 0, 0], [0.0, 0, 0, 9, 0, 0]]])
    y = torch.tensor([0, 0, 2, 3])
    assert ev.topk_accuracy(six, y, 5) == [75.0]
    assert ev.topk_accuracy(six, y, 1) == ev.topk_accuracy(six, y, 4) == [50.0]
    assert ev.topk_accuracy(TINY, TINY_Y, 5) == [100.0, 100.0]  # k > C counts as C


def test_float64_logits_are_not_rounded_to_float32():
    # two classes 1e-9 apart, as a combiner's float64 output can have them: float32 would
    # make them a tie
    z = torch.tensor([[[1.0, 1.0 + 1e-9], [1.0 + 1e-9, 1.0]]], dtype=torch.float64)
    assert ev.anytime_accuracy(z, torch.tensor([1, 0])) == [100.0]


def test_logits_must_be_exits_by_samples_by_classes():
    with pytest.raises(ValueError, match=r"preds must be \[N_exits, M, C\], got shape \(4, 3\)"):
        ev.anytime_accuracy(TINY[0], TINY_Y)
