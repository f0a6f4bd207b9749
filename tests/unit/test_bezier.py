import pytest
import torch

from fluxflow.models.bezier import PRE_ACTIVATIONS, BezierActivation, bezier, bezier_activation


def _chunks(t, p0, p1, p2, p3, dim=-1):
    return torch.cat([torch.as_tensor(v, dtype=torch.float64).reshape(1, 1) for v in (t, p0, p1, p2, p3)], dim=dim)


def test_hand_computed_values():
    # t = sigmoid(0) = 0.5, p = (1, 2, 3, 4): 0.125*1 + 0.375*2 + 0.375*3 + 0.125*4 = 2.5
    assert BezierActivation()(_chunks(0.0, 1, 2, 3, 4)).item() == pytest.approx(2.5)
    # no pre-activation, t = 0.2, p = (0, 1, -1, 2): 3*.64*.2 - 3*.8*.04 + .008*2 = 0.304
    assert BezierActivation("none")(_chunks(0.2, 0, 1, -1, 2)).item() == pytest.approx(0.304)
    # tanh on the control points: p_i = tanh(a_i)
    a = torch.tensor([0.3, -0.7, 1.1, 0.2], dtype=torch.float64)
    p = torch.tanh(a)
    expected = 0.125 * p[0] + 0.375 * p[1] + 0.375 * p[2] + 0.125 * p[3]
    assert BezierActivation("sigmoid", "tanh")(_chunks(0.0, *a)).item() == pytest.approx(expected.item())


def test_endpoints_pass_through_control_points():
    x = _chunks(0.0, 5, 6, 7, 8)
    x[0, 0] = -1e4  # sigmoid -> 0: B = p0
    assert BezierActivation()(x).item() == pytest.approx(5.0)
    x[0, 0] = 1e4  # sigmoid -> 1: B = p3
    assert BezierActivation()(x).item() == pytest.approx(8.0)


@pytest.mark.parametrize("shape,dim", [((3, 20), -1), ((2, 5, 15), -1), ((2, 10, 3, 4), 1)])
def test_layout_is_five_chunks_along_channel_dim(shape, dim):
    x = torch.randn(shape, dtype=torch.float64)
    y = BezierActivation()(x)
    c = shape[dim] // 5
    expected_shape = list(shape)
    expected_shape[dim] = c
    assert list(y.shape) == expected_shape
    t, p0, p1, p2, p3 = x.chunk(5, dim=dim)
    torch.testing.assert_close(y, bezier(torch.sigmoid(t), p0, p1, p2, p3))


@pytest.mark.parametrize("t_pre", PRE_ACTIVATIONS)
@pytest.mark.parametrize("p_pre", PRE_ACTIVATIONS)
def test_gradcheck_float64(t_pre, p_pre):
    x = torch.randn(2, 3, 10, 2, dtype=torch.float64, requires_grad=True)
    if "relu" in (t_pre, p_pre):  # keep away from relu's kink where finite differences are undefined
        x = (x.detach() + 0.3 * torch.sign(x.detach())).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: bezier_activation(v, 2, t_pre, p_pre), (x,))


@pytest.mark.parametrize("p_pre", ["none", "silu"])
def test_fused_backward_matches_autograd_of_formula(p_pre):
    x = torch.randn(4, 7, 35, requires_grad=True)
    g = torch.randn(4, 7, 7)
    (gx_fused,) = torch.autograd.grad(bezier_activation(x, -1, "sigmoid", p_pre), x, g)
    t, *ps = x.chunk(5, dim=-1)
    ps = [torch.nn.functional.silu(p) if p_pre == "silu" else p for p in ps]
    (gx_ref,) = torch.autograd.grad(bezier(torch.sigmoid(t), *ps), x, g)
    torch.testing.assert_close(gx_fused, gx_ref)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="divisible by 5"):
        BezierActivation()(torch.randn(2, 12))
    with pytest.raises(ValueError, match="allowed: sigmoid"):
        BezierActivation(t_pre_activation="softplus")


def test_compiled_kernels_match_eager_kernels_across_sizes():
    """The compiled kernels (``torch.compile`` with dynamic shapes: one graph for both sizes) give the eager
    kernels' values and gradients."""
    from fluxflow.models import bezier as bz

    previous = bz.set_bezier_kernels("compiled")
    try:
        for shape in ((6, 40), (9, 40)):  # two sizes, one dynamic-shape graph
            x = torch.randn(shape, requires_grad=True)
            g = torch.randn(*shape[:-1], 8)
            y_c = bezier_activation(x, -1)
            (gx_c,) = torch.autograd.grad(y_c, x, g)
            bz.set_bezier_kernels("eager")
            y_e = bezier_activation(x, -1)
            (gx_e,) = torch.autograd.grad(y_e, x, g)
            bz.set_bezier_kernels("compiled")
            if bz._compile_failed:
                pytest.skip("torch.compile does not work here (no C++ compiler?)")
            torch.testing.assert_close(y_c, y_e)
            torch.testing.assert_close(gx_c, gx_e)
    finally:
        bz.set_bezier_kernels(previous)
