import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import torch
    from concurrent.futures import FIRST_COMPLETED, wait
    from lawfinder.parallel import executor

    def weights(seed):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(2, 200), torch.nn.Tanh(), torch.nn.Linear(200, 200))
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def grow(state, seed):
        return {k: v + seed for k, v in state.items()}

    torch.set_num_threads(2)
    big = torch.randn(2000, 2000)
    (big @ big).sum()  # the parent's own thread pool is up before the workers fork, as after a fit
    with executor(2) as pool:
        pending = {pool.submit(weights, s): s for s in range(4)}
        got = {}
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                s = pending.pop(future)
                result = future.result()
                if isinstance(s, int):  # a later task that depends on this result
                    pending[pool.submit(grow, result, s)] = ("grown", s)
                else:
                    got[s[1]] = result
    for s in range(4):
        assert torch.equal(got[s]["0.weight"], weights(s)["0.weight"] + s)
    print("ok")
""")


@pytest.mark.skipif(sys.platform != "linux", reason="forked workers: Linux")
def test_forked_pool_hands_back_tensors_and_takes_dependent_tasks(tmp_path):
    """Tensors in results once travelled as shared-memory handles, and both workers of the ranking
    stage hung handing them over; here a dependent chain of tensor results must come back."""
    script = tmp_path / "chain.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
