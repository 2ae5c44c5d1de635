"""``bench speed``: its flags in the CLI's parser, what it prints, its errors (exit 2). The
measurement itself: tests/pipeline/test_speed.py."""
import pytest
import torch

import methods
from bench import cli

torch.set_num_threads(1)

QUICK = ["--batch-size", "4", "--warmup", "0", "--threads", "1"]


def speed(*args) -> int:
    return cli.main(["speed", *args])


def test_prints_one_timing_line_with_its_context(capsys):
    assert speed("--backbone", "msdnet_tiny", "--method", "boostnet", "--steps", "2",
                 "--warmup", "1", "--batch-size", "4", "--threads", "1") == 0
    out = capsys.readouterr().out
    for word in ("msdnet_tiny / boostnet, batch 4, cpu, fp32: median", "s/step, min", "max",
                 "threads 1", f"torch {torch.__version__}", "loadavg (",
                 "1 forward, 1 backward, 1 optimizer steps", "(2 rounds)"):
        assert word in out
    assert len(out.splitlines()) == 1


def test_a_line_per_stage_and_options_passed(capsys):
    assert speed("--backbone", "chain_tiny", "--method", "sequential", "--steps", "1",
                 "--option", "freeze_previous=false", *QUICK) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        f"chain_tiny / sequential stage {n}/3 (exit {n})" for n in (1, 2, 3)]


def test_others_are_printed_with_their_ratios_and_the_profile(capsys):
    assert speed("--backbone", "msdnet_tiny", "--method", "kd", "--against", "joint",
                 "--plain", "--steps", "2", "--profile", *QUICK) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("msdnet_tiny / kd")
    assert lines[1].startswith("  ours, NCHW: median") and "ours / ours, NCHW: " in lines[1]
    assert lines[2].startswith("  joint: median") and "(median of per-round ratios)" in lines[2]
    assert "Self CPU" in out and "profiled round: wall-clock" in out
    table = out[out.index("self time per op"):].splitlines()
    assert table[0] == "self time per op, ms per round (mean of 3 profiled rounds each)"
    assert table[1].split()[-4:] == ["ours", "ours,", "NCHW", "joint"]
    rows = {line[:48].strip(): [float(v) for v in line[48:].split()] for line in table[2:]}
    total = rows["total (all ops)"]
    assert len(total) == 3 and all(t > 0 for t in total)
    assert all(max(v) <= max(total) for v in rows.values())


def test_epoch_and_precision(capsys):
    assert speed("--backbone", "chain_tiny", "--rounds", "2", "--epoch", "--epoch-steps", "3",
                 "--precision", "bf16", *QUICK) == 0
    out = capsys.readouterr().out
    for word in ("cpu, bf16", "(2 rounds of 3 steps)", "images/s",
                 "one epoch of 50,000 images (12500 steps)", "extrapolated from the median round"):
        assert word in out


@pytest.mark.parametrize("name", methods.names())
def test_every_method_has_its_flag_value(name, capsys):
    assert speed("--backbone", "chain_tiny", "--method", name, "--steps", "1", *QUICK) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(methods.create(name).stages(3))
    assert all("s/step" in line for line in lines)


@pytest.mark.parametrize("bad, message", [
    (["--option", "nope"], "--option takes KEY=VALUE, got 'nope'"),
    (["--method", "joint", "--option", "nope=1"], "nope"),
    (["--epoch-steps", "0"], "--epoch-steps: expected at least 1"),
    (["--dataset", "nope"], "unknown data set 'nope'"),
    (["--reference", "/nonexistent"], "ChainNet is not an MSDNet backbone"),
])
def test_bad_values_exit_2_with_a_message(bad, message, capsys):
    assert speed("--backbone", "chain_tiny", "--steps", "1", *QUICK, *bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_bad_flags_are_the_parser_s(capsys):
    for bad in (["--precision", "fp64"], ["--method", "nope"], ["--rounds", "x"]):
        with pytest.raises(SystemExit) as exit_:
            speed("--backbone", "chain_tiny", *bad)
        assert exit_.value.code == 2
    assert "speed" in capsys.readouterr().err
