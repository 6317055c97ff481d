"""TOFU's metrics, computed as open-unlearning computes them (pure numpy / scipy, no model here).

Source: locuslab/open-unlearning at commit d3d7cf9e6b3c125d16687d4232680d8d83548f1a (2025-12-23):
src/evals/metrics/utils.py (evaluate_probability, tokenwise_vocab_logprobs),
src/evals/metrics/memorization.py (probability, truth_ratio, exact_memorization, extraction_strength),
src/evals/metrics/privacy.py (ks_test = forget quality), src/evals/metrics/utility.py (hm_aggregate),
configs/eval/tofu_metrics/*.yaml (which aggregator each split uses). docs/tofu.md lists the differences.

Token conventions (src/data/utils.py preprocess_chat_instance): the labels are the answer's tokens
followed by EOS; the question's tokens are masked. `answer_logprobs` below are the log-probs of those
label tokens given everything before them, EOS included.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: open-unlearning's guard in every ratio (truth_ratio, closer_to_1_better)
EPS = 1e-10


def avg_loss(answer_logprobs: Sequence[float]) -> float:
    """Mean NLL per label token (open-unlearning `avg_loss`: summed CE / number of label tokens)."""
    values = np.asarray(answer_logprobs, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no answer token to score")
    return float(-values.mean())


def probability(loss: float) -> float:
    """open-unlearning's `prob`: exp(-avg_loss), the per-token geometric mean, not the sequence probability."""
    return float(np.exp(-loss))


def truth_ratio(paraphrased_loss: float, perturbed_losses: Sequence[float]) -> float:
    """Per-sample truth ratio, TOFU's definition: P(wrong) / P(correct).

    correct = exp(-avg_loss of the paraphrased answer); wrong = exp(-mean of the perturbed answers'
    avg_losses) (aggregate_to_1D averages the losses BEFORE exponentiating: a geometric mean).
    """
    wrong = np.exp(-np.mean(np.asarray(perturbed_losses, dtype=np.float64)))
    correct = np.exp(-paraphrased_loss)
    return float(wrong / (correct + EPS))


def closer_to_1_better(ratios: Sequence[float]) -> float:
    """The forget split's aggregate: mean of min(tr, 1/tr); 1 = true and false answers equally likely."""
    arr = np.asarray(ratios, dtype=np.float64)
    return float(np.mean(np.minimum(arr, 1 / (arr + EPS))))


def true_better(ratios: Sequence[float]) -> float:
    """The retain split's aggregate: mean of max(0, 1 - tr); higher = the true answer is preferred."""
    arr = np.asarray(ratios, dtype=np.float64)
    return float(np.mean(np.maximum(0, 1 - arr)))


def forget_quality(model_ratios: Sequence[float], retain_model_ratios: Sequence[float]) -> float:
    """TOFU's forget quality: the two-sample KS test p-value of the forget truth ratios of the audited
    model against those of the retain (retrain) model (open-unlearning `ks_test`, scipy's defaults)."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(np.asarray(model_ratios, dtype=np.float64),
                          np.asarray(retain_model_ratios, dtype=np.float64)).pvalue)


def model_utility(values: Sequence[float]) -> float:
    """Harmonic mean of the utility components (open-unlearning `hm_aggregate`: scipy.stats.hmean)."""
    from scipy.stats import hmean

    arr = np.asarray(values, dtype=np.float64)
    if np.any(arr <= 0):  # hmean is 0 when any component is 0; scipy warns or raises on <= 0 by version
        return 0.0
    return float(hmean(arr))


def exact_memorization(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Fraction of answer tokens (EOS excluded) that are the model's argmax given the true prefix."""
    preds, labs = np.asarray(predictions), np.asarray(labels)
    if labs.size == 0:
        raise ValueError("no answer token to score")
    return float((preds == labs).sum() / labs.size)


def extraction_strength(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """1 - k/n for the smallest k whose suffix of argmax predictions equals the answer's suffix.

    As open-unlearning's loop: when no suffix matches, k is left at n - 1 (the loop's last value),
    so the floor is 1/n, not 0; n = 0 gives 0.
    """
    preds, labs = list(predictions), list(labels)
    n = len(labs)
    if n == 0:
        return 0.0
    k = 0
    for k in range(n):
        if preds[k:] == labs[k:]:
            break
    return 1 - k / n
