"""Truth tests for the diffusion core: schedule inverse, partial start, samplers, consistency."""

import pytest
import torch

from restore.diffusion import (
    Schedule,
    known_region_consistency,
    sample_ancestral,
    sample_ddim,
    start_from_observation,
)

SHAPES = [(2, 1, 64), (2, 1, 12, 10), (2, 1, 6, 8, 5)]


@pytest.fixture(params=["linear", "cosine"])
def schedule(request) -> Schedule:
    return Schedule.create(request.param, 1000)


def test_sigma_timestep_round_trip(schedule):
    t = torch.arange(0, schedule.num_steps + 1)
    assert torch.equal(schedule.timestep_for_sigma(schedule.sigma_at(t)), t)


def test_timestep_for_sigma_is_monotone_and_clamped(schedule):
    sigmas = torch.logspace(-4, 3, 500, dtype=torch.float64)
    t = schedule.timestep_for_sigma(sigmas)
    assert bool(torch.all(t[1:] >= t[:-1]))
    assert int(schedule.timestep_for_sigma(0.0)) == 0
    assert int(schedule.timestep_for_sigma(1e9)) == schedule.num_steps


def test_inference_timesteps_partial():
    s = Schedule.create("linear", 1000)
    ts = s.inference_timesteps(4, start=200)
    assert ts.tolist() == [200, 150, 100, 50, 0]
    assert s.inference_timesteps(10, start=3).tolist() == [3, 2, 1, 0]
    assert s.inference_timesteps(5, start=0).tolist() == [0]
    with pytest.raises(ValueError, match="start must be"):
        s.inference_timesteps(4, start=1001)


def oracle(x0: torch.Tensor):
    """A perfect denoiser: always returns the true x0."""
    return lambda x_t, t, cond: x0.expand_as(x_t)


@pytest.mark.parametrize("shape", SHAPES)
def test_t_star_zero_returns_input(shape, schedule):
    y = torch.randn(shape)
    x = start_from_observation(y, 0.1, 0, schedule)
    out = sample_ddim(oracle(torch.zeros(shape)), x, schedule.inference_timesteps(5, start=0), schedule)
    assert torch.equal(out, y)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("t_star", [1, 37, 250, 999, 1000])
@pytest.mark.parametrize("steps", [1, 3, 20])
def test_oracle_recovers_x0_from_any_start(shape, t_star, steps, schedule):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    sigma_y = float(schedule.sigma_at(t_star)) * 0.5
    y = x0 + sigma_y * torch.randn(shape, generator=g, dtype=torch.float64)
    x = start_from_observation(y, sigma_y, t_star, schedule, generator=g)
    ts = schedule.inference_timesteps(steps, start=t_star)
    for sampler in (sample_ddim, sample_ancestral):
        out = sampler(oracle(x0), x.clone(), ts, schedule, generator=g)
        torch.testing.assert_close(out, x0, rtol=0, atol=1e-6)


def test_start_from_observation_tops_up_to_the_step_marginal():
    s = Schedule.create("linear", 1000)
    g = torch.Generator().manual_seed(1)
    t_star, sigma_y = 300, 0.2
    x0 = torch.zeros(1, 1, 400, 400, dtype=torch.float64)
    y = x0 + sigma_y * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x = start_from_observation(y, sigma_y, t_star, s, generator=g)
    # x_t* = sqrt(ab) x0 + sqrt(1 - ab) eps: with x0 = 0 its std must be sqrt(1 - ab)
    expected = float((1 - s.alpha_bar[t_star]).sqrt())
    assert abs(float(x.std()) / expected - 1) < 0.01
    # and the observation's own noise is kept (correlated), not drawn afresh
    corr = torch.corrcoef(torch.stack([x.flatten(), y.flatten()]))[0, 1]
    assert abs(float(corr) - sigma_y / float(s.sigma_at(t_star))) < 0.02


@pytest.mark.parametrize("shape", SHAPES)
def test_consistency_keeps_known_samples_exactly(shape, schedule):
    g = torch.Generator().manual_seed(2)
    y = torch.randn(shape, generator=g)
    mask = torch.rand(shape, generator=g) > 0.5
    wrong = lambda x_t, t, cond: torch.full_like(x_t, 7.0)
    hook = known_region_consistency(y, mask, schedule, generator=g)
    x = start_from_observation(y, 0.0, 400, schedule, generator=g)
    for sampler in (sample_ddim, sample_ancestral):
        out = sampler(wrong, x.clone(), schedule.inference_timesteps(6, start=400), schedule,
                      consistency=hook, generator=g)
        assert torch.equal(out[mask], y[mask])
        assert torch.all(out[~mask] == 7.0)


def test_seeded_sampling_is_deterministic():
    s = Schedule.create("cosine", 1000)
    y = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    noisy_denoiser = lambda x_t, t, cond: 0.5 * x_t

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        x = start_from_observation(y, 0.1, 500, s, generator=g)
        return sample_ddim(noisy_denoiser, x, s.inference_timesteps(5, start=500), s, eta=1.0, generator=g)

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_ddim_eta_zero_is_deterministic_without_generator():
    s = Schedule.create("linear", 1000)
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    d = lambda x_t, t, cond: torch.tanh(x_t)
    ts = s.inference_timesteps(4, start=300)
    assert torch.equal(sample_ddim(d, x, ts, s), sample_ddim(d, x, ts, s))


def test_callback_sees_every_step():
    s = Schedule.create("linear", 1000)
    seen = []
    x = torch.zeros(1, 1, 4, 4)
    sample_ddim(lambda x_t, t, c: x_t, x, s.inference_timesteps(3, start=90), s,
                callback=lambda i, n, t, x0: seen.append((i, n, t)))
    assert seen == [(0, 3, 90), (1, 3, 60), (2, 3, 30)]
