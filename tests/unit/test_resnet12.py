"""ResNet-12 (models/resnet12.py) and the shared batch norm (models/layers.py): shapes, vmappability,
support-statistics normalization, second-order gradients, deterministic init, and Conv-4 unchanged by
the move of its batch norm into layers.batch_norm."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from meta_dist.models.conv4 import Conv4
from meta_dist.models.layers import batch_norm
from meta_dist.models.resnet12 import ResNet12, resnet12

SMALL = (8, 16, 32, 64)


def small_net(input_shape=(1, 28, 28), output_dim=5, seed=0, **kwargs) -> ResNet12:
    torch.manual_seed(seed)
    return ResNet12(input_shape, output_dim, widths=SMALL, **kwargs)


def params_of(net) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in net.named_parameters()}


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 84, 84), (1, 1, 1), (2, 5, 3)])
def test_output_and_embedding_shapes(shape):
    x = torch.randn(3, *shape)
    assert small_net(shape, 5)(x).shape == (3, 5)
    embed = small_net(shape, 0)
    assert embed.head is None and embed.num_features == SMALL[-1]
    assert embed(x).shape == (3, SMALL[-1])


def test_default_widths_and_no_running_buffers():
    net = ResNet12((1, 28, 28), 5)
    assert [b.convs[0].out_channels for b in net.blocks] == [64, 160, 320, 640]
    assert net.num_features == 640 and net.head.in_features == 640
    assert list(net.buffers()) == []
    assert not any(conv.bias is not None for b in net.blocks for conv in [*b.convs, b.shortcut])


@pytest.mark.parametrize("stats_rows", [None, 3])
def test_vmap_over_tasks_equals_the_loop(stats_rows):
    net = small_net(output_dim=4)
    kwargs = {} if stats_rows is None else {"stats_rows": stats_rows}
    base = params_of(net)
    stacked = {k: v + 0.01 * torch.randn(2, *v.shape) for k, v in base.items()}  # distinct per task
    x = torch.randn(2, 6, 1, 28, 28)
    fn = lambda p, xx: functional_call(net, p, (xx,), kwargs)  # noqa: E731
    batched = vmap(fn)(stacked, x)
    looped = torch.stack([fn({k: v[t] for k, v in stacked.items()}, x[t]) for t in range(2)])
    assert torch.allclose(batched, looped, atol=1e-5)


def test_support_rows_ignore_later_rows_and_normalize_them():
    net = small_net(output_dim=0)
    support, rest = torch.randn(4, 1, 28, 28), torch.randn(3, 1, 28, 28)
    out = net(torch.cat([support, rest]), stats_rows=4)
    changed = net(torch.cat([support, 5 * torch.randn(3, 1, 28, 28)]), stats_rows=4)
    assert torch.equal(out[:4], changed[:4])
    # a later row that copies a support row is normalized exactly like it: support statistics only
    copy = net(torch.cat([support, support[1:2], rest]), stats_rows=4)
    assert torch.allclose(copy[4], copy[1], atol=1e-5)
    assert not torch.allclose(net(torch.cat([support, support[1:2], rest]))[4], copy[4], atol=1e-4)


def test_second_order_maml_gradient_is_finite():
    net = small_net(output_dim=3)
    params = {k: v.detach().requires_grad_() for k, v in net.named_parameters()}
    xs, ys = torch.randn(6, 1, 28, 28), torch.arange(6) % 3
    xq, yq = torch.randn(6, 1, 28, 28), torch.arange(6) % 3
    inner = F.cross_entropy(functional_call(net, params, (xs,)), ys)
    grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
    fast = {k: v - 0.1 * g for (k, v), g in zip(params.items(), grads)}
    F.cross_entropy(functional_call(net, fast, (xq,)), yq).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params.values())


def test_init_is_deterministic_under_the_seed():
    a, b, c = small_net(seed=7), small_net(seed=7), small_net(seed=8)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.blocks[0].convs[0].weight, c.blocks[0].convs[0].weight)
    norm = a.blocks[2].norms[1]
    assert torch.equal(norm.weight, torch.ones_like(norm.weight))
    assert torch.equal(norm.bias, torch.zeros_like(norm.bias))


def test_factory_takes_config_kwargs():
    torch.manual_seed(1)
    made = resnet12([1, 28, 28], 5, widths=list(SMALL), dropout=0.0)
    ref = small_net(output_dim=5, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(made.state_dict().values(), ref.state_dict().values()))
    with pytest.raises(TypeError):
        resnet12((1, 28, 28), 5, channels=64)


def test_dropout_is_seeded_and_vmappable_with_randomness():
    plain, drop = small_net(output_dim=0, seed=2), small_net(output_dim=0, seed=2, dropout=0.5)
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(drop.eval()(x), plain(x))
    drop.train()
    torch.manual_seed(5)
    first = drop(x)
    torch.manual_seed(5)
    assert torch.equal(first, drop(x)) and not torch.allclose(first, plain(x))
    fn = lambda p, xx: functional_call(drop, p, (xx,))  # noqa: E731
    out = vmap(fn, in_dims=(None, 0), randomness="different")(params_of(drop), x.view(2, 2, 1, 28, 28))
    assert out.shape == (2, 2, SMALL[-1])


# -- layers.batch_norm: Conv-4 gives bitwise what its former inline batch norm gave -----------------

def frozen_conv4_forward(net: Conv4, x: torch.Tensor, stats_rows: int | None = None) -> torch.Tensor:
    """Conv-4's forward with its batch norm written inline, as it was before layers.batch_norm."""
    for conv, norm in zip(net.convs, net.norms):
        x = conv(x)
        if stats_rows is None:
            x = F.batch_norm(x, None, None, norm.weight, norm.bias, training=True, eps=1e-5)
        else:
            ref = x[:stats_rows]
            mean = ref.mean((0, 2, 3), keepdim=True)
            var = ref.var((0, 2, 3), unbiased=False, keepdim=True)
            x = (x - mean) * torch.rsqrt(var + 1e-5) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
        x = F.relu(x)
        if not net.strided:
            x = F.max_pool2d(x, 2)
    x = x.mean((2, 3)) if net.strided else x.flatten(1)
    return net.head(x) if net.head is not None else x


@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("stats_rows", [None, 3])
def test_conv4_is_bitwise_unchanged(strided, stats_rows):
    torch.manual_seed(0)
    net = Conv4((1, 16, 16), 8, 5, strided=strided)
    with torch.no_grad():  # non-trivial affine parameters, so weight and bias are exercised
        for norm in net.norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(7, 1, 16, 16)
    assert torch.equal(net(x, stats_rows=stats_rows), frozen_conv4_forward(net, x, stats_rows))


def test_batch_norm_uses_the_first_rows_statistics():
    x, w, b = torch.randn(6, 3, 4, 4), torch.rand(3) + 0.5, torch.randn(3)
    ref = x[:2]
    mean, var = ref.mean((0, 2, 3), keepdim=True), ref.var((0, 2, 3), unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-5) * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
    assert torch.allclose(batch_norm(x, w, b, 2), expected, atol=1e-5)
    assert torch.allclose(batch_norm(x, w, b, None), batch_norm(x, w, b, 6), atol=1e-5)
