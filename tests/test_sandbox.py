"""The worker's sandbox, tried as an adversarial entrant would: each cheating submission fails
cleanly with one line naming what was denied, and nothing outside its run changes."""

from __future__ import annotations

import ast
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from bonesr_bench.evaluation import EvaluateOptions, evaluate
from bonesr_bench.models.sandbox import describe, is_confined, landlock_abi, namespace_prefix

from conftest import tree_sha

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.skipif(landlock_abi() < 4 or not namespace_prefix(),
                                reason="needs Landlock ABI >= 4 and user namespaces (Linux)")

MODEL = '''
import os, glob, pwd, socket, subprocess, time
import torch
import torch.nn.functional as F

class Cheat:
    name = "cheat"
    scale = 2
    input = "slice"

    def __call__(self, lr):
{body}
        return F.interpolate(lr, scale_factor=2, mode="bicubic").clamp(0, 1)

def load(device):
    return Cheat()
'''


def _submission(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / "subs" / name / "model.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(MODEL.format(body=textwrap.indent(textwrap.dedent(body).strip(), " " * 8)))
    return path


@pytest.fixture()
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


def _cheats(split: Path, tmp_path: Path, port: int) -> dict[str, tuple[str, str]]:
    hr = split / "test" / "s2000" / "hr" / "0"
    return {  # name: (what the model does, what the one line must name)
        "read-the-hr-scan": (f"open({str(hr / '.zarray')!r}).read()", ".zarray"),
        "real-home": ("os.listdir(pwd.getpwuid(os.getuid()).pw_dir)", "Permission denied"),
        "glob-tmp": ("os.listdir('/tmp')", "'/tmp'"),
        "write-outside": (f"open({str(tmp_path / 'stolen.npy')!r}, 'wb').write(b'x')",
                          "stolen.npy"),
        "send-the-lr-out": ("import numpy; numpy.save('/dev/shm/lr.npy', lr.numpy())",
                            "/dev/shm/lr.npy"),
        "tcp-connect": (f"socket.create_connection(('127.0.0.1', {port}), timeout=2)",
                        "the sandbox denied it"),
        "tcp-bind": ("socket.socket().bind(('0.0.0.0', 0)); socket.socket().listen()",
                     "the sandbox denied it"),
    }


@pytest.mark.parametrize("cheat", ["read-the-hr-scan", "real-home", "glob-tmp", "write-outside",
                                   "send-the-lr-out", "tcp-connect", "tcp-bind"])
def test_a_cheat_fails_in_one_line_and_changes_nothing(cheat, mini_split, tmp_path, listener):
    body, named = _cheats(mini_split, tmp_path, listener)[cheat]
    src = _submission(tmp_path, cheat, body)
    out = tmp_path / "runs"
    before = {"split": tree_sha(mini_split), "leaderboard": tree_sha(ROOT / "leaderboard")}
    outcome = evaluate(str(src), EvaluateOptions(split=mini_split, out=out, device="cpu",
                                                 sandbox="required", timeout_s=120))
    res = outcome.result
    assert outcome.exit_code == 1 and res["status"] == "failed"
    assert "\n" not in res["reason"] and named in res["reason"], res["reason"]
    assert "the sandbox denied it" in res["reason"] or "Permission denied" in res["reason"]
    after = {"split": tree_sha(mini_split), "leaderboard": tree_sha(ROOT / "leaderboard")}
    assert after == before
    assert not (tmp_path / "stolen.npy").exists() and not Path("/dev/shm/lr.npy").exists()


def test_the_worker_sees_no_other_process_and_no_network(mini_split, tmp_path):
    """What a probe finds from inside: in its own PID namespace it has no parent (ppid 0), the
    process list and the parent's /proc entries are out of reach, and the only network
    interface is a loopback that is down; it reports by failing with what it saw."""
    body = """
    def attempt(f):
        try:
            return repr(f())
        except OSError as e:
            return type(e).__name__
    seen = {'ppid': os.getppid(),
            'pids': attempt(lambda: sorted(int(p) for p in os.listdir('/proc') if p.isdigit())),
            'parent': attempt(lambda: open('/proc/1/..//' + str(os.getppid()) + '/environ').read()),
            'init': attempt(lambda: open('/proc/1/environ').read()[:0]),
            'udp': attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(
                ('8.8.8.8', 53)))}
    raise RuntimeError('PROBE ' + repr(seen))
    """
    src = _submission(tmp_path, "probe", body)
    res = evaluate(str(src), EvaluateOptions(split=mini_split, out=tmp_path / "runs",
                                             device="cpu", sandbox="required")).result
    reason = res["reason"]
    assert "PROBE" in reason, reason
    seen = ast.literal_eval(reason.split("PROBE ", 1)[1])
    assert seen["ppid"] == 0  # PID 1 of its own namespace: no parent to look at
    assert seen["pids"] in ("PermissionError", "[1]", "[1, 2]")
    assert seen["parent"] in ("PermissionError", "FileNotFoundError")
    assert seen["udp"] == "OSError" or "unreachable" in seen["udp"].lower() or \
        seen["udp"] in ("PermissionError",)


def test_a_child_that_outlives_the_timeout_is_killed_with_the_worker(mini_split, tmp_path):
    marker = f"{time.time_ns() % 10**9}"
    body = f"""
    subprocess.Popen(['sleep', '1000.{marker}'], start_new_session=True)
    time.sleep(1000)
    """
    src = _submission(tmp_path, "child", body)
    res = evaluate(str(src), EvaluateOptions(split=mini_split, out=tmp_path / "runs",
                                             device="cpu", sandbox="required",
                                             timeout_s=5)).result
    assert res["status"] == "failed" and "timeout" in res["reason"]
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", f"sleep 1000.{marker}"], capture_output=True,
                          text=True).stdout.strip()
    assert not left, f"a child of the submission survived: {left}"


def test_an_honest_submission_with_weights_beside_it_runs_confined(mini_split, tmp_path):
    outcome = evaluate(str(ROOT / "submissions" / "example" / "model.py"),
                       EvaluateOptions(split=mini_split, out=tmp_path / "runs", device="cpu",
                                       sandbox="required"))
    assert outcome.exit_code == 0, outcome.result["reason"]
    sandbox = outcome.result["run"]["sandbox"]
    assert is_confined(sandbox) and sandbox["namespaces"] and sandbox["landlock_abi"] >= 4
    assert describe(sandbox).startswith("confined: Landlock ABI")


def test_unconfined_runs_are_recorded_and_refused_by_the_leaderboard(mini_split, tmp_path):
    from bonesr_bench.leaderboard import LeaderboardError, add

    outcome = evaluate(str(ROOT / "baselines" / "bicubic.py"),
                       EvaluateOptions(split=mini_split, out=tmp_path / "runs", device="cpu",
                                       sandbox="off"))
    assert outcome.result["run"]["sandbox"]["mode"] == "off"
    assert not is_confined(outcome.result["run"]["sandbox"])
    board = tmp_path / "board"
    with pytest.raises(LeaderboardError, match="unconfined.*--allow-unconfined"):
        add(outcome.path, board, allow_other_split=True)
    assert add(outcome.path, board, allow_other_split=True, allow_unconfined=True).is_file()


def test_where_the_kernel_cannot_confine_auto_records_it_and_required_refuses(monkeypatch,
                                                                               tmp_path):
    """Another OS or an old kernel (simulated): auto runs unconfined and records why; required
    refuses before anything runs, in one line."""
    from bonesr_bench.evaluation import EvaluationError
    from bonesr_bench.evaluation import run as run_mod
    from bonesr_bench.models import SubmissionError, sandbox, worker

    def unavailable(*_a, **_k):
        raise sandbox.SandboxUnavailable("the kernel offers no Landlock")

    monkeypatch.setattr(sandbox, "confine", unavailable)
    record = worker._confine({"mode": "auto", "namespaces": False}, tmp_path)
    assert record["filesystem"] is None and "no Landlock" in record["reason"]
    assert not is_confined(record) and describe(record).startswith("unconfined")
    with pytest.raises(SubmissionError, match="--sandbox required"):
        worker._confine({"mode": "required", "namespaces": False}, tmp_path)
    monkeypatch.setattr(sandbox, "landlock_abi", lambda: 0)
    with pytest.raises(EvaluationError, match="cannot confine.*--sandbox auto"):
        run_mod._check_sandbox("required")
    run_mod._check_sandbox("auto")  # runs, unconfined
    with pytest.raises(EvaluationError, match="--sandbox must be one of"):
        run_mod._check_sandbox("strict")


def test_the_site_shows_what_held_each_entry(tmp_path):
    """Per entry: the entry page says what confined its run; the main table marks an entry
    scored unconfined."""
    import shutil

    from bonesr_bench.evaluation import result
    from bonesr_bench.files import write_json
    from bonesr_bench.leaderboard.site import build

    results = tmp_path / "results"
    shutil.copytree(ROOT / "leaderboard" / "results", results)
    res = result.read(results / "bicubic.json")
    res["run"]["sandbox"] = {"mode": "off", "namespaces": False, "filesystem": None}
    write_json(results / "bicubic.json", res)
    site = build(results, tmp_path / "site")
    index = (site.out / "index.html").read_text()
    assert 'class="badge unconfined"' in index and "unconfined (--sandbox off)" in index
    page = (site.out / "entries" / "bicubic.html").read_text()
    assert "<th>sandbox</th><td>unconfined (--sandbox off)</td>" in page
