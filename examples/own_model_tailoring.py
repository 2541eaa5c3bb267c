"""Use a discovered law as the tailoring loss of your own torch model.

lawfinder fits and accepts the pendulum's energy (`lf.fit`: no ranking, seconds); a model of
dx/dt that lawfinder does not ship (two heads on a shared body) is trained on the same data;
at prediction time one inner step on the law's conservation loss adapts it to every state.

    python examples/own_model_tailoring.py            # 2000 training steps
    python examples/own_model_tailoring.py --quick    # 300
"""

import argparse

import numpy as np
import torch

import lawfinder as lf


class TwoHeads(torch.nn.Module):
    """dx/dt = (head_q(h), head_p(h)) with h a shared body of the state."""

    def __init__(self, width=64):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.Tanh(), torch.nn.Linear(width, width),
                                        torch.nn.Tanh())  # fmt: skip
        self.head_q, self.head_p = torch.nn.Linear(width, 1), torch.nn.Linear(width, 1)

    def forward(self, x):
        h = self.body(x)
        return torch.cat([self.head_q(h), self.head_p(h)], -1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)

    data = lf.load_system("pendulum")
    law = lf.fit(data).best
    params = ", ".join(f"{k} = {p.value:.6g} [{p.unit}]" for k, p in law.params.items())
    print(f"law: {law} ({law.status}); {params}")

    x, dxdt = (torch.as_tensor(a) for a in data.train().derivative_pairs())
    model = TwoHeads().double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(300 if args.quick else 2000):
        opt.zero_grad()
        loss = ((model(x) - dxdt) ** 2).mean()
        loss.backward()
        opt.step()

    dt = float(np.median(np.diff(data.times[0])))
    tailoring = law.tailoring_loss(dt)  # a lawfinder.NoetherLoss over the law's torch function
    x_test, dxdt_test = (torch.as_tensor(a) for a in data.test().derivative_pairs())
    with torch.no_grad():
        plain = float(((model(x_test) - dxdt_test) ** 2).mean())
        tailored = lf.tailored_predict(model, tailoring, x_test, lr=1e-2)
        after = float(((tailored - dxdt_test) ** 2).mean())
        g = law.torch()
        drift = {name: float((g(x_test + dt * pred) - g(x_test)).abs().mean())
                 for name, pred in (("plain", model(x_test)), ("tailored", tailored))}  # fmt: skip
    print(f"test dx/dt MSE: plain {plain:.5g}, tailored with the law {after:.5g}")
    print(f"mean change of the law over one step: plain {drift['plain']:.3g}, tailored {drift['tailored']:.3g}")


if __name__ == "__main__":
    main()
