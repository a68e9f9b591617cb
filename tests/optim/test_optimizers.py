"""hesslab.optim: AdaHessian and Sophia against the exact Hessian / GGN diagonal, in float64.

The estimators' expectations are checked against dense answers (hl.hessian, hl.ggn) with tolerances derived from
their variances; one or two optimizer steps are checked against the update written out by hand on flat vectors.
"""

import copy
import doctest
import math

import pytest
import torch
from helpers import classification_data, small_mlp
from torch import nn
from torch.nn.functional import cross_entropy

import hesslab as hl
from hesslab.optim import adahessian, estimators, sophia
from hesslab.sampling import rademacher

pytestmark = pytest.mark.usefixtures("one_thread")


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def mlp_closure(model, inputs, targets, with_logits=False):
    def closure():
        logits = model(inputs)
        loss = cross_entropy(logits, targets)
        return (loss, logits) if with_logits else loss
    return closure


def exact_quantities(model, inputs, targets):
    """Gradient, exact Hessian diagonal and exact GGN diagonal of the mean cross-entropy at the model's θ."""
    f, theta = hl.loss_function(model, cross_entropy, inputs, targets)
    g_of, _ = hl.output_function(model, inputs)
    point = theta.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(f(point), point)
    H = hl.hessian(f, theta)
    G = hl.ggn(g_of, lambda z: cross_entropy(z, targets), theta)
    return theta, gradient, H, G


def exact_diagonal(model, inputs, targets):
    """An ``estimator`` callable returning the exact diag(H) per parameter."""
    def estimator(loss, params):
        _, _, H, _ = exact_quantities(model, inputs, targets)
        return [piece.view_as(p) for piece, p in zip(H.diagonal().split([p.numel() for p in params]), params)]
    return estimator


def unflat_into(model, theta):
    with torch.no_grad():
        for piece, p in zip(theta.split([p.numel() for p in model.parameters()]), model.parameters()):
            p.copy_(piece.view_as(p))


# ----------------------------------------------------------------------------------------------------------------------
# the estimators' expectations against the exact diagonals
# ----------------------------------------------------------------------------------------------------------------------
def test_hutchinson_estimate_averages_to_the_exact_hessian_diagonal_within_its_standard_error():
    """E[z ⊙ Hz] = diag(H); one probe's variance is Σ_{j≠i} H_ij² exactly (Rademacher), so the mean of m probes
    lies within 5 standard errors sqrt(Σ_{j≠i} H_ij² / m) of diag(H) in every coordinate."""
    model, (inputs, targets) = small_mlp(), classification_data()
    _, _, H, _ = exact_quantities(model, inputs, targets)
    params = list(model.parameters())
    loss = cross_entropy(model(inputs), targets)
    gradients = torch.autograd.grad(loss, params, create_graph=True)
    generator, m = torch.Generator().manual_seed(0), 4000
    total = torch.zeros(H.shape[0], dtype=torch.float64)
    for _ in range(m):
        total += flat(estimators.hutchinson_diagonal_estimate(gradients, params, generator, retain_graph=True))
    mean = total / m
    stderr = ((H**2).sum(1) - H.diagonal() ** 2).sqrt() / math.sqrt(m)
    assert torch.all((mean - H.diagonal()).abs() <= 5 * stderr + 1e-12)
    assert (mean - H.diagonal()).abs().max() > 0  # it is an estimate, not the exact diagonal in disguise


def test_one_probe_is_exact_for_a_diagonal_hessian():
    w = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    scale = torch.tensor([2.0, 5.0, -1.0])
    gradients = torch.autograd.grad((0.5 * scale * w**2).sum() + w.sum(), [w], create_graph=True)
    estimate = estimators.hutchinson_diagonal_estimate(list(gradients), [w], torch.Generator().manual_seed(3))
    torch.testing.assert_close(estimate[0], scale, atol=0, rtol=0)


def test_gauss_newton_bartlett_identity_holds_exactly_by_enumerating_the_labels():
    """The identity behind SophiaG: E_ŷ[B ĝ ⊙ ĝ] = diag(GGN) of the mean cross-entropy, ŷ_b ~ softmax(f_b)
    independently. ĝ = (1/B) Σ_b J_bᵀ u_b with u_b = p_b − e_ŷ_b: the expectation is (1/B) Σ_b Σ_y p_b(y)
    (J_bᵀ(p_b − e_y))², computed here exactly over all labels, and compared with hl.ggn to rounding."""
    model, (inputs, targets) = small_mlp(), classification_data(n=12)
    theta, _, _, G = exact_quantities(model, inputs, targets)
    g_of, _ = hl.output_function(model, inputs)
    J = torch.autograd.functional.jacobian(g_of, theta)  # (B, C, n)
    p = torch.softmax(g_of(theta), dim=-1)  # (B, C)
    B, C = p.shape
    expectation = torch.zeros_like(theta)
    for b in range(B):
        for y in range(C):
            u = p[b] - torch.nn.functional.one_hot(torch.tensor(y), C).double()
            expectation += p[b, y] * (J[b].T @ u) ** 2 / B
    torch.testing.assert_close(expectation, G.diagonal(), atol=1e-14, rtol=1e-12)


def test_gauss_newton_bartlett_estimate_averages_to_the_exact_ggn_diagonal():
    """The estimator itself (label sampling, B ĝ ⊙ ĝ): the mean of m draws lies within 5 standard errors of
    diag(GGN) in every coordinate, the standard error estimated from the draws (m = 4000: the CLT applies)."""
    model, (inputs, targets) = small_mlp(), classification_data(n=12)
    _, _, _, G = exact_quantities(model, inputs, targets)
    params = list(model.parameters())
    logits = model(inputs)
    generator, m = torch.Generator().manual_seed(1), 4000
    draws = torch.stack([flat(estimators.gauss_newton_bartlett_estimate(logits, params, generator))
                         for _ in range(m)])
    stderr = draws.std(0) / math.sqrt(m)
    assert torch.all((draws.mean(0) - G.diagonal()).abs() <= 5 * stderr + 1e-12)
    assert torch.all(draws >= 0)  # a square: SophiaG's h is never negative


def conv_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 3 * 3, 3)).double()


def test_spatial_average_is_the_mean_of_the_exact_diagonal_over_each_kernel():
    model = conv_model()
    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(8, 1, 5, 5, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 3, (8,), generator=generator)
    f, theta = hl.loss_function(model, cross_entropy, inputs, targets)
    diagonal = hl.hessian(f, theta).diagonal()
    kernel = diagonal[: 2 * 1 * 3 * 3].view(2, 1, 3, 3)
    averaged = estimators.spatial_average(kernel)
    for out in range(2):
        torch.testing.assert_close(averaged[out, 0], kernel[out, 0].mean().expand(3, 3), atol=1e-15, rtol=0)
    bias, weight = diagonal[18:20], diagonal[20:74].view(3, 18)
    assert estimators.spatial_average(bias) is bias and estimators.spatial_average(weight) is weight
    # and AdaHessian uses it: with β2 = 0, v after one step is (mean over the kernel of |diag|)²
    opt = hl.optim.AdaHessian(model.parameters(), betas=(0.0, 0.0),
                              estimator=lambda loss, params: [d.view_as(p) for d, p in
                                                              zip(diagonal.split([p.numel() for p in params]), params)])
    opt.step(lambda: cross_entropy(model(inputs), targets))
    v = opt.state[model[0].weight]["exp_hessian_diag_sq"]
    torch.testing.assert_close(v, estimators.spatial_average(kernel.abs()) ** 2, atol=1e-15, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# one or two steps against the update written out by hand
# ----------------------------------------------------------------------------------------------------------------------
def adahessian_by_hand(theta, gradient, diagonal, m, v, t, lr, betas, eps, weight_decay, k):
    beta1, beta2 = betas
    m = beta1 * m + (1 - beta1) * gradient
    v = beta2 * v + (1 - beta2) * diagonal.abs() ** 2
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    return theta - lr * (m_hat / (v_hat ** (k / 2) + eps) + weight_decay * theta), m, v


def test_two_adahessian_steps_with_the_exact_diagonal_match_the_update_by_hand():
    model, (inputs, targets) = small_mlp(), classification_data()
    hyper = dict(lr=0.1, betas=(0.9, 0.999), eps=1e-4, weight_decay=0.01, hessian_power=0.5)
    opt = hl.optim.AdaHessian(model.parameters(), estimator=exact_diagonal(model, inputs, targets), **hyper)
    theta, m, v = exact_quantities(model, inputs, targets)[0], 0.0, 0.0
    for t in (1, 2):
        _, gradient, H, _ = exact_quantities(model, inputs, targets)
        expected, m, v = adahessian_by_hand(theta, gradient, H.diagonal(), m, v, t, hyper["lr"], hyper["betas"],
                                            hyper["eps"], hyper["weight_decay"], hyper["hessian_power"])
        loss = opt.step(mlp_closure(model, inputs, targets))
        torch.testing.assert_close(flat(model.parameters()), expected, atol=1e-14, rtol=1e-12)
        assert loss.ndim == 0 and not loss.requires_grad
        theta = expected


def test_adahessian_step_uses_the_absolute_hutchinson_probe_of_its_generator():
    """With the default estimator: D = |z ⊙ Hz| for the probe z that the generator draws (reproduced here)."""
    model, (inputs, targets) = small_mlp(), classification_data()
    f, theta = hl.loss_function(model, cross_entropy, inputs, targets)
    _, gradient, _, _ = exact_quantities(model, inputs, targets)
    z = rademacher(theta.numel(), 1, theta.dtype, theta.device, torch.Generator().manual_seed(7))[:, 0]
    D = (z * hl.hvp(f, theta, z)).abs()
    expected, _, _ = adahessian_by_hand(theta, gradient, D, 0.0, 0.0, 1, 0.15, (0.9, 0.999), 1e-4, 0.0, 1.0)
    opt = hl.optim.AdaHessian(model.parameters(), generator=torch.Generator().manual_seed(7))
    opt.step(mlp_closure(model, inputs, targets))
    torch.testing.assert_close(flat(model.parameters()), expected, atol=1e-14, rtol=1e-12)
    torch.testing.assert_close(flat([p.grad for p in model.parameters()]), gradient, atol=1e-15, rtol=1e-13)


def sophia_by_hand(theta, gradient, estimate, m, h, lr, betas, rho, weight_decay, eps):
    beta1, beta2 = betas
    m = beta1 * m + (1 - beta1) * gradient
    if estimate is not None:
        h = beta2 * h + (1 - beta2) * estimate
    ratio = m / torch.clamp(rho * h, min=eps)
    theta = theta * (1 - lr * weight_decay) - lr * ratio.clamp(-1, 1)
    return theta, m, h, (ratio.abs() > 1).double().mean().item()


def test_three_sophia_steps_with_the_exact_diagonal_match_the_update_by_hand():
    """k = 2: the diagonal is refreshed at steps 1 and 3 and reused at step 2; some coordinates are clipped,
    some are not; negative diagonal entries give the ε floor and a clipped step."""
    model, (inputs, targets) = small_mlp(), classification_data()
    hyper = dict(lr=0.05, betas=(0.9, 0.95), rho=0.5, weight_decay=0.1, eps=1e-12)
    opt = hl.optim.Sophia(model.parameters(), update_every=2, estimator=exact_diagonal(model, inputs, targets),
                          **hyper)
    theta, m, h = exact_quantities(model, inputs, targets)[0], 0.0, 0.0
    fractions = []
    for t in (1, 2, 3):
        _, gradient, H, _ = exact_quantities(model, inputs, targets)
        estimate = H.diagonal() if t in (1, 3) else None
        expected, m, h, fraction = sophia_by_hand(theta, gradient, estimate, m, h, **hyper)
        opt.step(mlp_closure(model, inputs, targets))
        torch.testing.assert_close(flat(model.parameters()), expected, atol=1e-14, rtol=1e-12)
        assert opt.clipped_fraction == pytest.approx(fraction, abs=1e-15)
        fractions.append(fraction)
        theta = expected
    assert 0 < min(fractions) and max(fractions) < 1
    assert (H.diagonal() < 0).any()


def test_sophia_g_refresh_is_b_times_the_squared_gradient_of_the_sampled_label_loss():
    model, (inputs, targets) = small_mlp(), classification_data()
    params = list(model.parameters())
    logits = model(inputs)
    probabilities = torch.softmax(logits.detach(), -1)
    sampled = torch.multinomial(probabilities, 1, generator=torch.Generator().manual_seed(5))[:, 0]
    g_hat = flat(torch.autograd.grad(cross_entropy(logits, sampled), params))
    opt = hl.optim.Sophia(params, betas=(0.965, 0.99), generator=torch.Generator().manual_seed(5))
    opt.step(mlp_closure(model, inputs, targets, with_logits=True))
    h = flat([opt.state[p]["hessian"] for p in params])
    torch.testing.assert_close(h, (1 - 0.99) * inputs.shape[0] * g_hat**2, atol=1e-16, rtol=1e-12)


def test_sophia_h_refresh_is_the_hutchinson_probe_of_its_generator():
    model, (inputs, targets) = small_mlp(), classification_data()
    f, theta = hl.loss_function(model, cross_entropy, inputs, targets)
    z = rademacher(theta.numel(), 1, theta.dtype, theta.device, torch.Generator().manual_seed(9))[:, 0]
    expected = (1 - 0.99) * z * hl.hvp(f, theta, z)
    opt = hl.optim.Sophia(model.parameters(), estimator="hutchinson", generator=torch.Generator().manual_seed(9))
    opt.step(mlp_closure(model, inputs, targets))
    torch.testing.assert_close(flat([opt.state[p]["hessian"] for p in model.parameters()]), expected,
                               atol=1e-16, rtol=1e-12)


def test_param_groups_each_use_their_own_hyperparameters():
    model, (inputs, targets) = small_mlp(), classification_data()
    theta, gradient, H, _ = exact_quantities(model, inputs, targets)
    first, second = list(model[0].parameters()), list(model[2].parameters())
    split = sum(p.numel() for p in first)
    opt = hl.optim.AdaHessian([{"params": first}, {"params": second, "lr": 0.02, "hessian_power": 0.5}], lr=0.1,
                              estimator=exact_diagonal(model, inputs, targets))
    opt.step(mlp_closure(model, inputs, targets))
    a, _, _ = adahessian_by_hand(theta, gradient, H.diagonal(), 0.0, 0.0, 1, 0.1, (0.9, 0.999), 1e-4, 0.0, 1.0)
    b, _, _ = adahessian_by_hand(theta, gradient, H.diagonal(), 0.0, 0.0, 1, 0.02, (0.9, 0.999), 1e-4, 0.0, 0.5)
    torch.testing.assert_close(flat(model.parameters()), torch.cat([a[:split], b[split:]]), atol=1e-14, rtol=1e-12)


@pytest.mark.parametrize("make", [
    lambda params, g: hl.optim.AdaHessian(params, lr=0.1, generator=g),
    lambda params, g: hl.optim.Sophia(params, lr=0.01, update_every=2, generator=g),
    lambda params, g: hl.optim.Sophia(params, lr=0.01, update_every=2, estimator="hutchinson", generator=g),
], ids=["adahessian", "sophia-g", "sophia-h"])
def test_state_dict_round_trip_continues_the_same_run(make):
    model, (inputs, targets) = small_mlp(), classification_data()
    generator = torch.Generator().manual_seed(11)
    opt = make(model.parameters(), generator)
    with_logits = isinstance(opt, hl.optim.Sophia) and opt.estimator == "gauss-newton-bartlett"
    for _ in range(3):
        opt.step(mlp_closure(model, inputs, targets, with_logits))
    saved_model, saved_state = copy.deepcopy(model), copy.deepcopy(opt.state_dict())
    saved_generator = generator.get_state()
    for _ in range(3):
        opt.step(mlp_closure(model, inputs, targets, with_logits))
    restored_generator = torch.Generator().manual_seed(0)
    restored_generator.set_state(saved_generator)
    restored = make(saved_model.parameters(), restored_generator)
    restored.load_state_dict(saved_state)
    for _ in range(3):
        restored.step(mlp_closure(saved_model, inputs, targets, with_logits))
    torch.testing.assert_close(flat(saved_model.parameters()), flat(model.parameters()), atol=0, rtol=0)


@pytest.mark.parametrize("estimator", ["adahessian", "gauss-newton-bartlett", "hutchinson"])
def test_a_drop_in_optimizer_trains_a_small_net(estimator):
    model, (inputs, targets) = small_mlp(), classification_data(n=60)
    generator = torch.Generator().manual_seed(0)
    opt = (hl.optim.AdaHessian(model.parameters(), generator=generator) if estimator == "adahessian" else
           hl.optim.Sophia(model.parameters(), lr=0.02, estimator=estimator, generator=generator))
    closure = mlp_closure(model, inputs, targets, with_logits=estimator == "gauss-newton-bartlett")
    losses = [opt.step(closure).item() for _ in range(60)]
    assert losses[-1] < 0.8 * losses[0]


# ----------------------------------------------------------------------------------------------------------------------
# errors and flags
# ----------------------------------------------------------------------------------------------------------------------
def make_both(model):
    return [hl.optim.AdaHessian(model.parameters()), hl.optim.Sophia(model.parameters(), estimator="hutchinson")]


def test_missing_closure_non_scalar_loss_and_closure_with_backward_are_refused_clearly():
    model, (inputs, targets) = small_mlp(), classification_data()
    for opt in make_both(model):
        with pytest.raises(TypeError, match="needs a closure that returns the loss"):
            opt.step()
        with pytest.raises(ValueError, match="must return a scalar loss"):
            opt.step(lambda: cross_entropy(model(inputs), targets, reduction="none"))
        with pytest.raises(TypeError, match="torch.Tensor loss"):
            opt.step(lambda: 1.0)

        def with_backward():
            loss = cross_entropy(model(inputs), targets)
            loss.backward()
            return loss
        with pytest.raises(RuntimeError, match="called loss.backward"):
            opt.step(with_backward)
        with pytest.raises(ValueError, match="loss is not finite"):
            opt.step(lambda: cross_entropy(model(inputs), targets) * float("nan"))


def test_sophia_g_needs_the_logits():
    model, (inputs, targets) = small_mlp(), classification_data()
    opt = hl.optim.Sophia(model.parameters())
    with pytest.raises(ValueError, match=r"return \(loss, logits\)"):
        opt.step(mlp_closure(model, inputs, targets))
    with pytest.raises(ValueError, match="C >= 2"):
        opt.step(lambda: (cross_entropy(model(inputs), targets), model(inputs)[:, :1]))


@pytest.mark.parametrize("call, error, message", [
    (lambda p: hl.optim.AdaHessian(p, lr=0.0), ValueError, r"lr must be a finite number in \(0, inf\)"),
    (lambda p: hl.optim.AdaHessian(p, betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
    (lambda p: hl.optim.AdaHessian(p, hessian_power=1.5), ValueError, "hessian_power"),
    (lambda p: hl.optim.AdaHessian(p, estimator="exact"), ValueError, "estimator must be"),
    (lambda p: hl.optim.AdaHessian(p, generator=0), TypeError, "generator must be"),
    (lambda p: hl.optim.Sophia(p, rho=-1.0), ValueError, r"rho must be a finite number in \(0, inf\)"),
    (lambda p: hl.optim.Sophia(p, update_every=0), ValueError, "update_every"),
    (lambda p: hl.optim.Sophia(p, estimator="gnb"), ValueError, "estimator must be one of"),
    (lambda p: hl.optim.Sophia(p, betas=0.9), TypeError, "betas must be a pair"),
])
def test_bad_hyperparameters(call, error, message):
    with pytest.raises(error, match=message):
        call(small_mlp().parameters())


def test_non_finite_curvature_is_flagged_and_never_applied():
    model, (inputs, targets) = small_mlp(), classification_data()
    nan_diagonal = lambda loss, params: [torch.full_like(p, float("nan")) for p in params]  # noqa: E731
    before = flat(model.parameters()).clone()
    opt = hl.optim.AdaHessian(model.parameters(), estimator=nan_diagonal)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        opt.step(mlp_closure(model, inputs, targets))
    assert opt.nonfinite_curvature == 1 and torch.equal(flat(model.parameters()), before) and not opt.state
    opt = hl.optim.Sophia(model.parameters(), lr=0.01, update_every=1, estimator="hutchinson")
    opt.step(mlp_closure(model, inputs, targets))
    h = flat([opt.state[p]["hessian"] for p in model.parameters()]).clone()
    opt.estimator = nan_diagonal
    with pytest.warns(RuntimeWarning, match="not applied"):
        opt.step(mlp_closure(model, inputs, targets))
    assert opt.nonfinite_curvature == 1
    assert torch.equal(flat([opt.state[p]["hessian"] for p in model.parameters()]), h)
    assert torch.isfinite(flat(model.parameters())).all()


def test_docstring_examples_run():
    for module in (adahessian, sophia, estimators):
        result = doctest.testmod(module, raise_on_error=False)
        assert result.failed == 0, module.__name__


@pytest.mark.parametrize("make", [hl.optim.AdaHessian, lambda params, estimator: hl.optim.Sophia(
    params, lr=0.01, estimator=estimator)], ids=["adahessian", "sophia"])
def test_a_callable_estimator_may_differentiate_the_loss_again(make):
    """The loss's graph is alive when the estimator is called (here: the squared gradient, computed again)."""
    model, (inputs, targets) = small_mlp(), classification_data()
    squared_gradient = lambda loss, params: [g**2 for g in torch.autograd.grad(loss, params)]  # noqa: E731
    opt = make(model.parameters(), estimator=squared_gradient)
    opt.step(mlp_closure(model, inputs, targets))
    gradient = flat([p.grad for p in model.parameters()])
    state = opt.state[next(model.parameters())]
    assert gradient.abs().max() > 0 and len(state) == 3
