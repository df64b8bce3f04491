"""benchmarks/prior_adaptation.py: EM's class-mix estimate and BCTS calibration, on synthetic
faces whose exact posteriors are known (a Gaussian mixture), so a wrong update shows."""

import numpy as np
import pytest
from script_loader import load_script

pa = load_script("benchmarks/prior_adaptation.py", "prior_adaptation_bench")

MEANS = np.random.default_rng(7).normal(size=(4, 5)) * 1.5
TRAIN_MIX = np.array([0.5, 0.3, 0.15, 0.05])


def _faces(mix, n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(mix), size=n, p=mix)
    return MEANS[labels] + rng.normal(size=(n, MEANS.shape[1])), labels


def _posteriors(x, mix):
    """Exact Bayes posteriors of the mixture (unit covariance) under class mix ``mix``."""
    log_lik = -0.5 * ((x[:, None, :] - MEANS[None]) ** 2).sum(-1)
    q = np.exp(log_lik - log_lik.max(1, keepdims=True)) * mix
    return q / q.sum(1, keepdims=True)


def test_em_recovers_a_shifted_mix_and_its_answers_beat_the_unadapted_ones():
    target = np.array([0.1, 0.2, 0.3, 0.4])
    x, labels = _faces(target, 5000, seed=1)
    p = _posteriors(x, TRAIN_MIX)  # calibrated under the training mix, tested under another
    estimate = pa.em_prior(p, TRAIN_MIX)
    np.testing.assert_allclose(estimate, target, atol=0.02)
    adapted = pa.reweight(p, estimate / TRAIN_MIX).argmax(1)
    assert np.mean(adapted == labels) > np.mean(p.argmax(1) == labels) + 0.05
    # Under the training mix itself EM stays near it (within its sampling noise: the classes
    # overlap), where the FER+ models' uncalibrated output drifts to one class.
    x0, _ = _faces(TRAIN_MIX, 5000, seed=2)
    np.testing.assert_allclose(pa.em_prior(_posteriors(x0, TRAIN_MIX), TRAIN_MIX), TRAIN_MIX,
                               atol=0.035)


def test_bcts_undoes_a_sharpened_and_biased_output():
    x, labels = _faces(TRAIN_MIX, 20000, seed=3)
    calibrated = _posteriors(x, TRAIN_MIX)
    logits = np.log(calibrated)
    bias = np.array([0.5, -0.3, 0.2, 0.0])
    distorted = np.exp(2.0 * logits - bias)
    distorted /= distorted.sum(1, keepdims=True)
    temperature, fitted_bias = pa.fit_bcts(distorted, labels)
    assert temperature == pytest.approx(2.0, rel=0.08)
    # The bias is found up to a constant shared by every class.
    recovered = fitted_bias - fitted_bias.mean()
    np.testing.assert_allclose(recovered, (bias / 2.0) - (bias / 2.0).mean(), atol=0.12)
    repaired = pa.calibrate(distorted, temperature, fitted_bias)
    assert np.abs(repaired - calibrated).mean() < np.abs(distorted - calibrated).mean() / 3


def test_shifted_batch_draws_each_class_in_its_share():
    labels = np.repeat(np.arange(4), 50)
    idx = pa.shifted_batch(np.random.default_rng(0), labels, np.arange(200),
                           np.array([0.5, 0.25, 0.25, 0.0]), 40)
    assert np.bincount(labels[idx], minlength=4).tolist() == [20, 10, 10, 0]


def test_simulate_scores_every_method_and_balanced_helps_on_an_even_mix():
    x, labels = _faces(TRAIN_MIX, 4000, seed=4)
    p = _posteriors(x, TRAIN_MIX)
    report = pa.simulate(p, labels, TRAIN_MIX, tau=1.0, sizes=[200], halves=2, batches=3)
    row = report["accuracy"]["200"]
    assert set(row) == set(pa.SCENARIOS) and all(set(r) == set(pa.METHODS) for r in row.values())
    assert row["uniform"]["balanced"] > row["uniform"]["training"]
    assert row["uniform"]["bcts_em"] > row["uniform"]["training"]
    assert len(report["temperature_per_half"]) == 2
