"""Soft-target cross-entropy and knowledge distillation (the expression recipe's losses)."""

from __future__ import annotations

from keras import ops


def soft_cross_entropy(targets, logits):
    """Mean cross-entropy of target distributions ``(B, K)`` against logits ``(B, K)``."""
    return ops.mean(-ops.sum(targets * ops.log_softmax(logits, axis=-1), axis=-1))


def distillation_loss(targets, logits, teacher_logits, weight: float, temperature: float):
    """``(1 - w) CE(targets, student) + w T^2 KL(softmax(t / T) || softmax(s / T))``."""
    ce = soft_cross_entropy(targets, logits)
    log_p_teacher = ops.log_softmax(teacher_logits / temperature, axis=-1)
    log_p_student = ops.log_softmax(logits / temperature, axis=-1)
    kl = ops.mean(ops.sum(ops.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1))
    return (1.0 - weight) * ce + weight * temperature ** 2 * kl
