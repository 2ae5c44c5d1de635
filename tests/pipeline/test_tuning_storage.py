"""Studies shared by several ``bench tune`` workers on the storages meant for that: a
PostgreSQL server (started by the test in a temporary folder, or the one
BENCH_TEST_POSTGRES_URL names) and Optuna's journal file (``--storage journal:PATH``).

Two workers start at once on one study: the trials are numbered once in the database, the
study holds ``tune.trials`` of them (not that many per worker; one more where both finish
a trial at the same instant), no point is tried twice; a third worker with a larger ``tune.trials`` resumes the same study."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from bench.pipeline.tuning import open_storage  # noqa: E402 (needs optuna)

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SUITE = {
    "name": "shared-study",
    "dataset": {"name": "synthetic", "heldout": 64,
                "options": {"num_classes": 4, "image_size": 16, "train_size": 256,
                            "test_size": 64, "augment": False}},
    "backbones": [{"name": "chain_tiny", "overrides": {"image_size": 16}}],
    "methods": [{"name": "boostnet", "label": "boost-tuned",
                 "options": {"temperature": "tuned"}}],
    "training": {"epochs": 2, "batch_size": 32, "device": "cpu",
                 "schedule": {"name": "constant"}, "optimizer": {"lr": 0.05}},
    "tune": {"trials": 4, "objective": "anytime", "pruner": "none", "epochs": 1,
             "space": {"low": 0.1, "high": 1.5}},
}


# ---------------------------------------------------------------------------------------
# A PostgreSQL server of the test's own


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    initdb = found[0] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A database on a server started for these tests (as the ``postgres`` user when the
    tests run as root: PostgreSQL refuses to run as root), stopped afterwards."""
    if os.environ.get("BENCH_TEST_POSTGRES_URL"):
        yield os.environ["BENCH_TEST_POSTGRES_URL"]
        return
    pytest.importorskip("psycopg", reason="psycopg is not installed (the test extra has it)")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server here (Debian: apt-get install postgresql; make test "
                    "installs it where apt-get runs as root)")
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server as")
        prefix = ["runuser", "-u", "postgres", "--"]
    top = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    top.chmod(0o755)
    data, sockets = top / "data", top / "sockets"
    for d in (data, sockets):
        d.mkdir()
        if owner:
            os.chown(d, owner.pw_uid, owner.pw_gid)
    port = _free_port()

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(prefix + list(cmd), capture_output=True, text=True, timeout=120)

    steps = [
        (str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "bench", "--no-sync"),
        (str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(sockets / "server.log"), "-w",
         "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off", "start"),
        (str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "bench",
         "optuna"),
    ]
    try:
        for step in steps:
            done = run(*step)
            if done.returncode != 0:
                pytest.skip(f"PostgreSQL could not be started ({Path(step[0]).name}: "
                            f"{(done.stderr or done.stdout).strip()[:300]})")
        yield f"postgresql+psycopg://bench@127.0.0.1:{port}/optuna"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(top, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Workers


def start_worker(suite: Path, storage: str, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    args = [sys.executable, "-m", "bench", "tune", str(suite), "--storage", storage]
    args += [a for o in overrides for a in ("--set", o)]
    return subprocess.Popen(args, cwd=suite.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(worker: subprocess.Popen) -> str:
    out, err = worker.communicate(timeout=600)
    assert worker.returncode == 0, err
    return out


def load(storage: str):
    """The one study in ``storage`` (a URL, or journal:PATH as bench tune takes it)."""
    opened = open_storage(storage)
    (summary,) = optuna.get_all_study_summaries(opened)
    return optuna.load_study(study_name=summary.study_name, storage=opened)


def check_shared_study(tmp_path: Path, storage: str) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    workers = [start_worker(suite, storage) for _ in range(2)]
    outputs = [finish(w) for w in workers]
    pids = {f"{socket.gethostname()}:{w.pid}" for w in workers}

    trials = load(storage).get_trials()
    numbers = sorted(t.number for t in trials)  # 4 in all, not 4 per worker
    assert numbers == list(range(len(numbers))) and 4 <= len(numbers) <= 5  # (the last may
    # be one over: two workers that end a trial at the same instant each start another)
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.params["temperature"] for t in trials}) == len(trials)  # none twice
    assert [t.params for t in trials if t.user_attrs.get("baseline")] == [{"temperature": 0.5}]
    assert {t.user_attrs["worker"] for t in trials} <= pids  # only those two ran them
    names = {out.split(":")[0] for out in outputs}  # "study <name>: 3 complete, ..."
    assert names == {f"study {load(storage).study_name}"}  # both worked on the one study

    before = {t.number: (t.params, t.value) for t in trials}
    finish(start_worker(suite, storage, "tune.trials=6"))  # resume: up to 6
    trials = load(storage).get_trials()
    assert sorted(t.number for t in trials) == list(range(6))
    assert {t.number: (t.params, t.value) for t in trials if t.number in before} == before
    best = max(trials, key=lambda t: t.value)
    (best_file,) = (tmp_path / "results" / "shared-study" / "tuning").glob("*.json")
    assert yaml.safe_load(best_file.read_text())["trial"] == best.number


def test_two_workers_share_a_study_on_postgresql(tmp_path, postgres_url):
    check_shared_study(tmp_path, postgres_url)


def test_two_workers_share_a_study_in_a_journal_file(tmp_path):
    journal = tmp_path / "shared" / "studies.log"
    check_shared_study(tmp_path, f"journal:{journal}")
    assert journal.stat().st_size > 0
    assert not (tmp_path / "results" / "shared-study" / "tuning" / "optuna.db").exists()
