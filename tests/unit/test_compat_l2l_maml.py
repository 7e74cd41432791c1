"""meta_dist.compat.l2l's algorithms (MAML, MetaSGD) and module utilities against learn2learn's
documented behaviour.

Gradient references are independent of the code under test: torch.func over a functional model,
and a closed-form derivative for a one-weight model.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

from meta_dist.compat import l2l


# -- algorithms ---------------------------------------------------------------------------------------
def regression_data(seed=0, n=8, d=3, out=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, out, generator=g, dtype=torch.float64),
            torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, out, generator=g, dtype=torch.float64)]


def compat_meta_grad(model, lr, data, first_order=False, steps=1):
    xs, ys, xq, yq = data
    maml = l2l.algorithms.MAML(model, lr=lr, first_order=first_order)
    learner = maml.clone()
    for _ in range(steps):
        learner.adapt(F.mse_loss(learner(xs), ys))
    F.mse_loss(learner(xq), yq).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()}


def reference_meta_grad(model, lr, data, steps=1):
    """grad_theta L_q(theta - lr * grad L_s(theta)) (repeated `steps` times), with torch.func."""
    xs, ys, xq, yq = data
    theta = {k: p.detach().clone() for k, p in model.named_parameters()}

    def support_loss(p):
        return F.mse_loss(functional_call(model, p, (xs,)), ys)

    def query_after_adaptation(p):
        for _ in range(steps):
            g = grad(support_loss)(p)
            p = {k: p[k] - lr * g[k] for k in p}
        return F.mse_loss(functional_call(model, p, (xq,)), yq)

    return grad(query_after_adaptation)(theta)


@pytest.mark.parametrize("steps", [1, 2])
def test_maml_matches_second_order_reference(steps):
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    data = regression_data()
    expected = reference_meta_grad(model, 0.1, data, steps)
    got = compat_meta_grad(model, 0.1, data, steps=steps)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-10, atol=1e-12)


def test_maml_matches_closed_form_on_one_weight():
    """f(x) = w x, L(w) = mean((w x - y)^2): dL_q(w')/dw = L_q'(w') (1 - lr L_s''), with w' = w - lr L_s'(w)."""
    xs, ys, xq, yq = (t[:, :1] for t in regression_data())
    lr, w = 0.05, 0.7
    model = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.fill_(w)
    ds1 = 2 * (xs * (w * xs - ys)).mean()
    ds2 = 2 * (xs ** 2).mean()
    w_adapted = w - lr * ds1
    dq1 = 2 * (xq * (w_adapted * xq - yq)).mean()
    second = compat_meta_grad(model, lr, (xs, ys, xq, yq))["weight"]
    model.weight.grad = None
    first = compat_meta_grad(model, lr, (xs, ys, xq, yq), first_order=True)["weight"]
    torch.testing.assert_close(second.item(), (dq1 * (1 - lr * ds2)).item())
    torch.testing.assert_close(first.item(), dq1.item())


def test_first_order_is_query_gradient_at_adapted_parameters():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    xs, ys, xq, yq = data = regression_data()
    adapted = copy.deepcopy(model)
    g = torch.autograd.grad(F.mse_loss(adapted(xs), ys), list(adapted.parameters()))
    with torch.no_grad():
        for p, gp in zip(adapted.parameters(), g):
            p -= 0.1 * gp
    F.mse_loss(adapted(xq), yq).backward()
    got = compat_meta_grad(model, 0.1, data, first_order=True)
    second = reference_meta_grad(model, 0.1, data)
    for k, p in adapted.named_parameters():
        torch.testing.assert_close(got[k], p.grad)
        assert not torch.allclose(got[k], second[k])  # the Hessian term is really gone


def test_clone_isolation_and_gradient_flow():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    before = copy.deepcopy(model.state_dict())
    xs, ys, xq, yq = regression_data()
    maml = l2l.algorithms.MAML(model, lr=0.5)
    learner = maml.clone()
    assert isinstance(learner, l2l.algorithms.MAML) and learner.lr == 0.5
    assert all(not p.is_leaf for p in learner.parameters())
    learner.adapt(F.mse_loss(learner(xs), ys))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # the original is untouched
    assert not torch.equal(learner.module[0].weight, model[0].weight)
    F.mse_loss(learner(xq), yq).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert maml.clone(first_order=True).first_order and not maml.clone().first_order


class WithSpare(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(3, 2)
        self.spare = nn.Parameter(torch.ones(2))

    def forward(self, x):
        return self.used(x)


def test_allow_unused():
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    learner = l2l.algorithms.MAML(WithSpare(), lr=0.1).clone()
    with pytest.raises(RuntimeError) as err:
        learner.adapt(F.mse_loss(learner(x), y))
    assert any("allow_unused" in note for note in getattr(err.value, "__notes__", []))
    spare = learner.module.spare
    weight = learner.module.used.weight
    learner.adapt(F.mse_loss(learner(x), y), allow_unused=True)
    assert learner.module.spare is spare  # no gradient, no update
    assert learner.module.used.weight is not weight


def test_allow_nograd():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    maml = l2l.algorithms.MAML(model, lr=0.1)
    with pytest.raises(RuntimeError):
        learner = maml.clone()
        learner.adapt(F.mse_loss(learner(x), y))
    assert l2l.algorithms.MAML(model, lr=0.1, allow_nograd=True).allow_unused  # defaults to allow_nograd
    learner = maml.clone(allow_nograd=True)
    frozen = learner.module[0].weight
    learner.adapt(F.mse_loss(learner(x), y))
    assert learner.module[0].weight is frozen
    F.mse_loss(learner(x), y).backward()
    assert model[0].weight.grad is None and model[1].weight.grad is not None


def test_metasgd_learns_step_sizes():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    xs, ys, xq, yq = regression_data()
    meta = l2l.algorithms.MetaSGD(model, lr=0.3)
    assert isinstance(meta.lrs, nn.ParameterList) and len(meta.lrs) == 2
    for lr, p in zip(meta.lrs, model.parameters()):
        assert lr.shape == p.shape and torch.all(lr == 0.3)
    with torch.no_grad():
        meta.lrs[0].mul_(torch.rand_like(meta.lrs[0]))  # per-entry step sizes
    learner = meta.clone()
    g = torch.autograd.grad(F.mse_loss(model(xs), ys), list(model.parameters()))
    learner.adapt(F.mse_loss(learner(xs), ys))
    for adapted, p, lr, gp in zip(learner.parameters(), model.parameters(), meta.lrs, g):
        torch.testing.assert_close(adapted, p - lr * gp)
    F.mse_loss(learner(xq), yq).backward()
    assert all(lr.grad is not None and lr.grad.abs().sum() > 0 for lr in meta.lrs)
    assert all(p.grad is not None for p in model.parameters())
    first = meta.clone(first_order=True)
    first.adapt(F.mse_loss(first(xs), ys))
    meta.zero_grad()
    F.mse_loss(first(xq), yq).backward()
    assert all(lr.grad.abs().sum() > 0 for lr in meta.lrs)  # the step sizes stay in the graph


def test_learner_forwards_attributes_to_module():
    model = nn.Linear(3, 2)
    maml = l2l.algorithms.MAML(model, lr=0.1)
    assert maml.weight is model.weight and maml.in_features == 3
    with pytest.raises(AttributeError):
        maml.no_such_attribute


# -- utils --------------------------------------------------------------------------------------------
class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.b(torch.relu(self.a(x))))


def test_clone_module_keeps_sharing_and_graph():
    net = Tied()
    clone = l2l.clone_module(net)
    assert clone is not net and clone.a is not net.a
    assert clone.a.weight is clone.b.weight  # tied weights stay tied
    assert clone.a.weight.grad_fn is not None and len(list(clone.parameters())) == len(list(net.parameters()))
    # Buffers that need no grad (running statistics) are shared with the original, as in learn2learn.
    assert clone.bn.running_mean is net.bn.running_mean
    clone(torch.randn(6, 4)).pow(2).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert l2l.utils.clone_module(3) == 3


def test_update_module_applies_updates_differentiably():
    net = nn.Linear(3, 2)
    clone = l2l.clone_module(net)
    updates = [torch.ones_like(p) for p in clone.parameters()]
    old = [p.detach().clone() for p in clone.parameters()]
    assert l2l.update_module(clone, updates=updates) is clone
    for p, o in zip(clone.parameters(), old):
        torch.testing.assert_close(p.detach(), o + 1)
        assert not p.is_leaf
    clone.bias.update = torch.full_like(clone.bias, 2.0)  # the .update attribute path
    l2l.update_module(clone)
    torch.testing.assert_close(clone.bias.detach(), old[1] + 3)
    clone(torch.randn(4, 3)).sum().backward()
    assert net.weight.grad is not None and net.bias.grad is not None


def test_update_module_updates_a_shared_parameter_once():
    net = Tied()
    clone = l2l.clone_module(net)
    params = list(clone.parameters())  # unique tensors: the tied weight appears once
    l2l.update_module(clone, updates=[torch.ones_like(p) for p in params])
    assert clone.a.weight is clone.b.weight
    torch.testing.assert_close(clone.a.weight.detach(), net.a.weight.detach() + 1)


def test_update_module_warns_on_length_mismatch():
    clone = l2l.clone_module(nn.Linear(3, 2))
    with pytest.warns(UserWarning):
        l2l.update_module(clone, updates=[torch.zeros(2, 3)])


def test_detach_module():
    net = nn.Linear(3, 2)
    clone = l2l.clone_module(net)
    l2l.detach_module(clone)
    assert all(p.grad_fn is None and not p.requires_grad for p in clone.parameters())
    clone = l2l.clone_module(net)
    l2l.detach_module(clone, keep_requires_grad=True)
    assert all(p.is_leaf and p.requires_grad for p in clone.parameters())
    clone(torch.randn(2, 3)).sum().backward()
    assert net.weight.grad is None and clone.weight.grad is not None


def test_rnn_clone_and_adapt():
    torch.manual_seed(0)
    rnn = nn.GRU(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    learner = l2l.algorithms.MAML(rnn, lr=0.5).clone()
    before = learner(x)[0].detach()
    learner.adapt(learner(x)[0].pow(2).mean())
    assert not torch.allclose(learner(x)[0], before)  # the forward uses the updated weights
    learner(x)[0].sum().backward()
    assert all(p.grad is not None for p in rnn.parameters())


def test_magic_box():
    x = torch.tensor([0.3, -1.0], requires_grad=True)
    box = l2l.magic_box(x)
    torch.testing.assert_close(box.detach(), torch.ones(2))
    box.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(2))
