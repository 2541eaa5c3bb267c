import json

import numpy as np
import pandas as pd
import pytest
import sympy
import torch
from click.testing import CliRunner

import dsl
from lawfinder.cli.app import cli, main


def run_main(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr().err


def oscillator_csv(path, n=16, seed=3):
    """An oscillator the project does not ship: x'' = -4 x, so v**2 + 4 x**2 is conserved."""
    rng = np.random.default_rng(seed)
    rows = []
    t = np.linspace(0, 2, 25)
    for k in range(n):
        amp, phase = rng.uniform(0.3, 1.5), rng.uniform(0, 2 * np.pi)
        x, v = amp * np.sin(2 * t + phase), 2 * amp * np.cos(2 * t + phase)
        rows += [{"trajectory": f"run{k}", "t": ti, "x": xi, "v": vi} for ti, xi, vi in zip(t, x, v)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_search_on_user_data(tmp_path):
    data = oscillator_csv(tmp_path / "osc.csv")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["search", "--data", str(data), "--units", "x=m", "--units", "v=m/s",
              "--out", str(out), "--epochs", "2", "--top", "4", "--seeds", "2", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    for key in ("command", "system", "variables", "seed", "device", "versions", "git_revision",
                "counts", "timings_s", "ranking", "baselines"):  # fmt: skip
        assert key in summary
    assert set(summary["counts"]) >= {"enumerated", "fitted", "accepted", "distinct", "meta_tailored"}
    assert set(summary["timings_s"]) >= {"enumerate", "fit", "rank", "total"}
    assert set(summary["ranking_work_s"]) >= {"pretrain", "meta_tailor", "refit", "rollouts"}
    assert summary["seeds"] == [0, 1] and "control" in summary["baselines"]
    best = summary["ranking"][0]
    expr = sympy.sympify(best["formula"])
    x, v = sympy.symbols("x v")
    ratio = float(expr.coeff(x**2) / expr.coeff(v**2))
    assert abs(ratio - 4.0) < 0.04
    assert (out / "candidates.parquet").exists()
    assert "test_rmse" in summary["baselines"]["vanilla"]


def test_no_law_is_said_plainly(tmp_path):
    out = tmp_path / "rw"
    result = CliRunner().invoke(cli, ["search", "--system", "random-walk", "--max-size", "5",
                                      "--out", str(out), "--epochs", "1", "--seeds", "1", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "No conserved quantity found" in result.output
    assert json.loads((out / "summary.json").read_text())["ranking"] == []


def test_formula_as_tailoring_loss_in_a_users_own_model():
    from lawfinder.tailoring import NoetherLoss, tailored_predict

    class TwoHeads(torch.nn.Module):  # a model lawfinder does not ship
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Softplus())
            self.head = torch.nn.Linear(16, 2)

        def forward(self, x):
            return self.head(self.body(x))

    torch.manual_seed(0)
    model = TwoHeads().double()
    from lawfinder.laws.compile import formula_to_torch

    energy = formula_to_torch(dsl.Formula.parse("p**2 - 3.0*cos(q)", {"q": "rad", "p": "kg*m**2/s"}), ["q", "p"])
    loss = NoetherLoss(energy, "infinitesimal", 0.1)
    x = torch.randn(32, 2, dtype=torch.float64)

    def violation(pred):
        grad = torch.func.vmap(torch.func.jacrev(lambda s: energy(s)[0]))(x)
        return (grad * pred).sum(-1).square().mean()

    before = violation(model(x)).item()
    after = violation(tailored_predict(model, loss, x, lr=1e-2)).item()
    assert after < before


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "--system", "nope"], "unknown system"),
        (["search", "--data", "missing.csv", "--units", "q=m"], "missing.csv"),
        (["fit", "--system", "pendulum", "--device", "cuda"], "CUDA"),
        (["tailor", "--system", "pendulum", "--formula", "p**2 - cos("], "formula"),
        (["tailor", "--system", "pendulum", "--formula", "p + q"], "same unit"),
        (["enumerate", "--var", "q:furlongz"], "furlongz"),
        (["search", "--system", "pendulum", "--data", "x.csv"], "exactly one"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args, message, capsys, tmp_path, monkeypatch):
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("CUDA is present")
    monkeypatch.chdir(tmp_path)
    code, err = run_main(args, capsys)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("error")]
    assert len(lines) == 1 and message in lines[0], err


def test_bad_units_on_user_data(tmp_path, capsys):
    data = oscillator_csv(tmp_path / "osc.csv", n=3)
    code, err = run_main(["fit", "--data", str(data), "--units", "x=m", "--units", "v=parsecz"], capsys)
    assert code == 2 and "parsecz" in err


def test_resume_refuses_another_runs_folder(tmp_path, capsys):
    out = tmp_path / "run"
    main(["enumerate", "--system", "spring", "--max-size", "3", "--out", str(out)])
    code, err = run_main(["fit", "--system", "pendulum", "--max-size", "3", "--out", str(out), "--resume"], capsys)
    assert code == 2 and "--resume" in err


def test_interrupted_search_resumes_to_the_same_summary(tmp_path):
    args = ["search", "--system", "spring", "--epochs", "2", "--top", "4", "--seeds", "2", "--quiet"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert CliRunner().invoke(cli, [*args, "--out", str(full)]).exit_code == 0
    import shutil

    shutil.copytree(full, cut)
    # What a run killed during ranking leaves: fit checkpoints, candidates, some ranking runs.
    for name in ("summary.json", "ranking.parquet"):
        (cut / name).unlink()
    runs = sorted((cut / "ranking_runs").iterdir())
    kept = {p.name: p.stat().st_mtime_ns for p in runs[::2]}
    for p in runs[1::2]:
        p.unlink()
    (cut / "predictors" / "seed1.pt").unlink()
    before = (cut / "candidates.parquet").stat().st_mtime_ns
    result = CliRunner().invoke(cli, [*args, "--out", str(cut), "--resume"])
    assert result.exit_code == 0, result.output
    assert (cut / "candidates.parquet").stat().st_mtime_ns == before  # finished work kept
    assert all((cut / "ranking_runs" / n).stat().st_mtime_ns == t for n, t in kept.items())
    a = json.loads((full / "summary.json").read_text())
    b = json.loads((cut / "summary.json").read_text())
    assert a["ranking"] == b["ranking"] and a["counts"] == b["counts"] and a["baselines"] == b["baselines"]


@pytest.mark.parametrize(
    ("change", "differs"),
    [(["--noise", "0.05"], "noise"), (["--seeds", "3"], "seeds"), (["--seed", "1"], "seed"),
     (["--epochs", "3"], "epochs"), (["--top", "12"], "top")],
)  # fmt: skip
def test_resume_with_other_settings_or_data_is_one_line_exit_2(tmp_path, capsys, change, differs):
    from lawfinder.data.systems import get_system
    from lawfinder.runs.pipeline import SearchConfig, claim_run_folder, run_identity

    out = tmp_path / "run"
    traj = get_system("pendulum").load()
    claim_run_folder(out, run_identity(traj, SearchConfig.from_options(seeds=2, epochs=2), "pendulum", None), False)
    base = ["search", "--system", "pendulum", "--seeds", "2", "--epochs", "2", "--out", str(out), "--resume", "--quiet"]
    code, err = run_main([*base, *change], capsys)
    assert code == 2 and "--resume" in err and differs in err and len(err.strip().splitlines()) == 1


def test_the_run_identity_covers_the_data():
    from lawfinder.data.systems import get_system
    from lawfinder.runs.pipeline import SearchConfig, run_identity

    clean, noisy = get_system("pendulum").load(), get_system("pendulum").load(noise=0.05)
    a = run_identity(clean, SearchConfig(), "pendulum", None)
    b = run_identity(noisy, SearchConfig(), "pendulum", None)  # same settings, other data
    assert a["data_sha256"] != b["data_sha256"] and a == run_identity(clean, SearchConfig(), "pendulum", None)


@pytest.mark.slow
def test_kill_9_during_ranking_loses_at_most_the_tasks_in_flight(tmp_path):
    """A search killed with SIGKILL while it meta-tailors resumes from its checkpoints (one per seed and law)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    args = [sys.executable, "-m", "lawfinder.cli", "search", "--system", "spring", "--epochs", "20",
            "--top", "6", "--seeds", "2", "--quiet", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = out / "ranking_runs"
    deadline = time.time() + 600
    while time.time() < deadline and (not runs.exists() or len(list(runs.glob("*.json"))) < 2):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: p.read_text() for p in runs.glob("*.json")}
    assert len(done) >= 2 and not (out / "summary.json").exists()
    result = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert all((runs / name).read_text() == text for name, text in done.items())  # nothing redone
    summary = json.loads((out / "summary.json").read_text())
    oracle_runs = "runs_of" not in summary["baselines"]["oracle"]  # else it shares a law's runs
    keys = 1 + summary["counts"]["meta_tailored"] + oracle_runs  # + the control
    assert summary["ranking"] and len(list(runs.glob("*.json"))) == 2 * keys


def test_the_interleaved_ranking_stages_share_one_progress_bar(monkeypatch):
    """Pre-training and meta-tailoring alternate (a seed's runs start when its predictor is there): one
    bar counts both, instead of a new bar (with a made-up rate) at every switch."""
    import tqdm

    from lawfinder.cli.common import stage_progress

    bars = []

    class Bar:
        def __init__(self, total, desc, leave, **_):
            self.total, self.desc, self.n, self.postfix, self.closed = total, desc, 0, "", False
            bars.append(self)

        def set_description_str(self, text, refresh=True):
            self.desc = text

        def refresh(self):
            pass

        def close(self):
            self.closed = True

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    update, close = stage_progress(quiet=False)
    update("fit", 3, 6)
    update("fit", 6, 6)
    for stage, done, total in [("pretrain", 0, 2), ("meta-tailor", 0, 8), ("pretrain", 1, 2), ("meta-tailor", 4, 8),
                               ("pretrain", 2, 2), ("meta-tailor", 6, 8)]:  # fmt: skip
        update(stage, done, total)
    ranking = bars[-1]
    assert len(bars) == 2 and bars[0].desc == "fit" and bars[0].closed and not ranking.closed
    assert (ranking.n, ranking.total) == (8, 10) and ranking.desc == "ranking (pre-trained 2/2, meta-tailored 6/8)"
    update("meta-tailor", 8, 8)
    assert ranking.closed and len(bars) == 2
    close()
