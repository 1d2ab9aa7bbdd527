"""The public API: CLIP on your own network with ``import clipbook`` only; the core's import graph; extras."""
import ast
import pathlib
import subprocess
import sys

import pytest
import torch
from torch import nn

import clipbook

PACKAGE = pathlib.Path(clipbook.__file__).parent

#: A practitioner's script: a custom network with BatchNorm and a residual block, its own training loop,
#: nothing from clipbook but the top-level API.
SCRIPT = '''
import torch
import torch.nn.functional as F
from torch import nn

import clipbook as cb


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))

    def forward(self, x):
        return F.relu(x + self.body(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = Residual(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.block(self.stem(x)).mean((2, 3)))


torch.manual_seed(0)
def data(n):  # two classes: a bright upper or a bright lower half, plus noise
    y = torch.randint(0, 2, (n,))
    x = 0.5 * torch.randn(n, 1, 8, 8)
    x[y == 0, :, :4] += 1.0
    x[y == 1, :, 4:] += 1.0
    return x, y
x_train, y_train = data(2048)
x_lip, _ = data(256)

model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
clip = cb.CLIP(x_lip, target_acc=0.9, lam=0.0, dlam=0.01, pairs_per_step=32, noise=0.1)
lams = []
for step in range(300):
    idx = torch.randint(0, len(x_train), (32,))
    xb, yb = x_train[idx], y_train[idx]
    model.train()
    loss = clip.loss(model, xb, yb, F.cross_entropy)
    opt.zero_grad()
    loss.backward()
    opt.step()
    lams.append(clip.update(clip.accuracy(yb)))
model.eval()
with torch.no_grad():
    acc = (model(x_train).argmax(1) == y_train).float().mean().item()
lower = cb.search_lipschitz_pairs(model, clip.pairs.anchor_x, clip.pairs.anchor_xp, steps=5).quotients.max().item()
'''


def test_a_script_with_only_the_public_api_trains_clip_on_a_batchnorm_residual_network():
    tree = ast.parse(SCRIPT)
    used = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | \
           {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m for m in used if m.startswith("clipbook")} == {"clipbook"}  # no submodule
    ns: dict = {}
    exec(compile(tree, "practitioner.py", "exec"), ns)
    lams = ns["lams"]
    assert lams[0] == 0.0 and max(lams) > 0.5  # lambda moved: the accuracy stayed above the target
    assert ns["acc"] > 0.8
    assert ns["clip"].steps == 300 and 0.0 < ns["lower"] < float("inf")
    assert ns["clip"].pairs.tau.ne(1.0).any()  # Algorithm 1 adapted the step sizes


def _bn_net(dropout: float = 0.5):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Dropout(dropout), nn.Linear(4 * 36, 3))


def test_eval_pair_mode_sees_the_deployed_network_and_leaves_batchnorm_statistics_alone():
    """With ``pair_mode="eval"`` the pairs run in a second pass in evaluation mode: the running statistics
    are those of the minibatch alone, the quotients those of the deployed network, and every module's own
    mode is restored."""
    model, twin = _bn_net(), _bn_net()
    twin.load_state_dict(model.state_dict())
    xb, yb = torch.randn(16, 1, 6, 6), torch.randint(0, 3, (16,))
    x, xp = torch.randn(8, 1, 6, 6), torch.randn(8, 1, 6, 6)
    clip = clipbook.CLIP((x, xp), lam=0.5, pair_mode="eval")
    model.train()
    model[4].eval()  # a caller's own choice for one module survives
    loss = clip.loss(model, xb, yb)
    twin.train()
    twin[4].eval()
    twin(xb)
    assert torch.equal(model[1].running_mean, twin[1].running_mean)
    assert torch.equal(model[1].running_var, twin[1].running_var)
    assert model.training and model[1].training and not model[4].training
    twin.eval()
    with torch.no_grad():
        q_eval = clipbook.difference_quotients(twin, x, xp)
    assert torch.allclose(clip._pending[2].q.detach(), q_eval, rtol=1e-5)
    loss.backward()
    clip.update()
    assert clip.pairs.proposed.all()  # every pair proposed its first ascent step


def test_batch_pair_mode_normalises_the_pairs_with_the_minibatch_statistics():
    """The default ``pair_mode="batch"``: one forward pass, but BatchNorm normalises (and updates its running
    statistics) with the minibatch alone; each pair's outputs are what the layer that the minibatch defines
    gives it, so the quotients do not depend on the other pairs."""
    model, twin = _bn_net(0.0), _bn_net(0.0)
    xb, yb = torch.randn(16, 1, 6, 6), torch.randint(0, 3, (16,))
    x, xp = 5 + torch.randn(8, 1, 6, 6), torch.randn(8, 1, 6, 6)  # far from the data
    clip = clipbook.CLIP((x, xp), lam=0.5)
    model.train(), twin.train()
    clip.loss(model, xb, yb)
    out_b = twin(xb)
    assert torch.allclose(model[1].running_mean, twin[1].running_mean, atol=1e-6)
    assert torch.allclose(clip.outputs, out_b.detach(), atol=1e-5)
    with torch.no_grad():  # pair 0 alone behind the same minibatch: the same quotient
        q_all = clip._pending[2].q.detach()
        with clipbook.core.models.batchnorm_statistics_from(twin, 16, update_running=False):
            out = twin(torch.cat([xb, x[:1], xp[:1]]))[16:]
        assert torch.allclose(q_all[0], (out[0] - out[1]).norm() / (x[0] - xp[0]).norm(), rtol=1e-5)


def test_fused_and_exact_clip_objects_give_the_same_parameter_gradient():
    xb, yb = torch.randn(16, 1, 6, 6), torch.randint(0, 3, (16,))
    x, xp = torch.randn(8, 1, 6, 6), torch.randn(8, 1, 6, 6)
    grads = []
    for fused in (True, False):
        model = _bn_net(dropout=0.0)
        clip = clipbook.CLIP((x, xp), lam=0.5, fused=fused, tau=1e-9)  # tau tiny: the exact step barely moves
        clip.loss(model, xb, yb).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        clip.update()
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-6)


def test_clip_refuses_bad_arguments_and_a_second_loss_without_update():
    with pytest.raises(ValueError, match="target_acc"):
        clipbook.CLIP(torch.rand(4, 2), target_acc=1.5)
    with pytest.raises(ValueError, match="pairs_per_step"):
        clipbook.CLIP(torch.rand(4, 2), pairs_per_step=0)
    with pytest.raises(RuntimeError, match="no pairs"):
        clipbook.CLIP(None).loss(nn.Linear(2, 2), torch.rand(3, 2), torch.zeros(3, dtype=torch.long))
    clip, net = clipbook.CLIP(torch.rand(4, 2)), nn.Linear(2, 2)
    clip.loss(net, torch.rand(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(RuntimeError, match="update"):
        clip.loss(net, torch.rand(3, 2), torch.zeros(3, dtype=torch.long))


def test_window_cycles_through_x_lip_and_warmup_holds_lambda():
    net = nn.Linear(2, 2)
    clip = clipbook.CLIP(torch.rand(10, 2), pairs_per_step=4, target_acc=0.5, dlam=0.1, warmup_steps=2,
                         acc_momentum=0.0)
    for _ in range(5):
        clip.loss(net, torch.rand(3, 2), torch.zeros(3, dtype=torch.long)).backward()
        clip.update(1.0)
    assert clip.cursor == 20 % 10 and clip.lam == pytest.approx(0.3)  # 5 updates, the first 2 hold lambda
    assert bool((clip.pairs.q > 0).all())  # every pair was evaluated


# The import graph ------------------------------------------------------------------------------------------

#: The three parts, as folders: the core a practitioner imports (Lipschitz estimates and bounds, CLIP and the
#: trainer, attacks, certificates, models, data), the reproduction of the paper, and the book's figures.
PARTS = ("core", "repro", "book")
#: what each part may import ("": the top-level package): the core only itself, the reproduction the core, the
#: book both
ALLOWED = {"core": {"", "core"}, "repro": {"", "core", "repro"}, "book": {"", "core", "repro", "book"}}


def clipbook_imports(path: pathlib.Path) -> set[str]:
    """The parts of clipbook (``core``, ``repro``, ``book``, or ``""`` for the top-level package) that a file in
    one of them imports anywhere (top level or inside functions)."""
    here = path.parent.name
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 1:
                found.add(here)
            elif node.level == 2:
                found |= {parts[0]} if parts[0] else {a.name for a in node.names}
            elif parts[0] == "clipbook":
                found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("clipbook.")}
    return {p if p in PARTS else "" for p in found}


def test_the_package_is_three_parts_and_nothing_else():
    assert {p.name for p in PACKAGE.glob("*.py")} == {"__init__.py", "__main__.py"}
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(PARTS)


def test_the_core_imports_nothing_from_the_reproduction_or_the_book():
    bad = {(f"{part}/{f.name}", dep) for part in PARTS for f in (PACKAGE / part).glob("*.py")
           for dep in clipbook_imports(f) if dep not in ALLOWED[part]}
    assert not bad, f"imports across the parts' order (core < repro < book): {sorted(bad)}"


def test_importing_the_whole_core_loads_no_other_part():
    code = ("import importlib, pkgutil, sys, clipbook.core as c\n"
            "[importlib.import_module(f'clipbook.core.{m.name}') for m in pkgutil.iter_modules(c.__path__)]\n"
            "print(sorted({n.split('.')[1] for n in sys.modules if n.startswith('clipbook.')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['core']"


def test_a_missing_optional_dependency_names_its_extra(monkeypatch):
    monkeypatch.delitem(clipbook.__dict__, "lipsdp_bound", raising=False)
    real = clipbook.find_spec
    monkeypatch.setattr(clipbook, "find_spec", lambda name: None if name == "cvxpy" else real(name))
    with pytest.raises(clipbook.MissingExtraError, match=r"needs cvxpy: pip install 'clipbook\[certify\]'"):
        clipbook.lipsdp_bound


def test_every_public_name_resolves():
    for name in clipbook.__all__:
        assert getattr(clipbook, name) is not None


def test_joint_pair_mode_refuses_the_fused_step():
    """With the pairs in the BatchNorm statistics the data loss depends on them: fused pair gradients would be wrong
    (measured in review: relative error 1897 against 1.4e-7 in "batch" mode)."""
    import clipbook as cb
    with pytest.raises(ValueError, match="fused=False"):
        cb.CLIP(torch.rand(20, 3), target_acc=0.9, pair_mode="joint")
    cb.CLIP(torch.rand(20, 3), target_acc=0.9, pair_mode="joint", fused=False)
