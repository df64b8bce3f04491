"""Multi-optimizer training steps (GANs) for the TensorFlow and JAX backends.

Keras' ``compute_loss`` hook assumes one optimizer. A GAN updates several disjoint variable
groups (generator, discriminator, classifier, ...), each with its own optimizer and its own
loss, so ``train_step`` must be overridden, once per backend. :class:`MultiOptimizerModel`
does that once for every model in the project; a subclass only writes ordinary, stateful
Keras code:

- :meth:`MultiOptimizerModel.variable_groups`: ``{group: [trainable variables]}``;
- :meth:`MultiOptimizerModel.compute_losses`: ``(x, y, training) -> (losses, logs)`` where
  ``losses`` maps every group to the scalar that *its* optimizer minimises, and ``logs``
  maps names to scalars averaged by ``keras.metrics.Mean`` trackers.

Each group's optimizer receives the gradient of that group's loss only, all from one forward
pass: a generator term that flows through the discriminator moves the generator, never the
discriminator. TensorFlow runs ``compute_losses`` under a persistent ``tf.GradientTape``.
JAX runs it inside a ``StatelessScope`` (so layer updates such as batch-norm statistics or
island-loss centres come back as new non-trainable values), takes ``jax.vjp`` once and
pulls back one cotangent per group; under ``jit`` XLA drops the gradients a group does not
use. The JAX step returns the ``(trainable, non_trainable, optimizer, metrics)`` state tuple
that Keras 3's JAX trainer threads through ``fit``. Mixed-precision loss scaling is not
applied.

Example::

    class MyGAN(MultiOptimizerModel):
        def __init__(self, generator, discriminator, **kwargs):
            super().__init__(log_names=("g_loss", "d_loss"), **kwargs)
            self.generator, self.discriminator = generator, discriminator

        def variable_groups(self):
            return {"generator": self.generator.trainable_variables,
                    "discriminator": self.discriminator.trainable_variables}

        def compute_losses(self, x, y, training=True):
            ...
            return {"generator": g, "discriminator": d}, {"g_loss": g, "d_loss": d}

    gan.compile(optimizers={"generator": Adam(), "discriminator": Adam()})
    gan.fit(x, y)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras


class OptimizerGroup:
    """Several optimizers presented to the Keras trainer as one ``model.optimizer``.

    The JAX trainer threads ``model.optimizer.variables`` through its state and builds the
    optimizer with ``build(model.trainable_variables)``; this object concatenates the
    member optimizers' variables (in group order) and builds each member on its own group.

    ``by_group`` maps each group to its optimizer; ``optimizers`` is the same optimizers as a
    list in group order, the form Keras' callbacks read (TensorBoard logs each
    ``optimizer.optimizers[i].learning_rate``).

    Args:
        optimizers: ``{group: keras.optimizers.Optimizer}``.
        groups_fn: zero-argument callable returning ``{group: [variables]}`` (called at
            build time, when the model's variables exist).
    """

    def __init__(self, optimizers: Mapping[str, keras.optimizers.Optimizer], groups_fn):
        self.by_group = dict(optimizers)
        self.optimizers = list(self.by_group.values())
        self._groups_fn = groups_fn
        self.built = False

    @property
    def variables(self) -> list:
        return [v for opt in self.optimizers for v in opt.variables]

    def build(self, var_list=None) -> None:
        """Builds every member optimizer on its group's variables (``var_list`` is ignored)."""
        groups = self._groups_fn()
        for name, opt in self.by_group.items():
            if not opt.built:
                opt.build(list(groups[name]))
        self.built = True


class MultiOptimizerModel(keras.Model):
    """A ``keras.Model`` trained by one optimizer per variable group (see module docstring).

    Args:
        log_names: names of the scalars ``compute_losses`` returns in ``logs``; each gets
            a ``keras.metrics.Mean`` tracker reported by ``fit``.
        **kwargs: ``keras.Model`` arguments (``name``).
    """

    def __init__(self, log_names: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.trackers = [keras.metrics.Mean(name=name) for name in log_names]

    @property
    def metrics(self) -> list:
        return list(self.trackers)

    def variable_groups(self) -> dict[str, list]:
        """``{group: [trainable variables]}``; groups must be disjoint and cover the model."""
        raise NotImplementedError(f"{type(self).__name__} must implement variable_groups().")

    def compute_losses(self, x, y, training: bool = True) -> tuple[dict, dict]:
        """Forward pass: returns ``({group: scalar loss}, {log name: scalar})``."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_losses().")

    def compile(self, optimizers: Mapping[str, keras.optimizers.Optimizer], **kwargs) -> None:
        """Compiles with one optimizer per group.

        Args:
            optimizers: ``{group: optimizer}`` with exactly the keys of
                :meth:`variable_groups`. Each optimizer must be a distinct instance.
            **kwargs: other ``keras.Model.compile`` arguments (``jit_compile``,
                ``run_eagerly``, ``steps_per_execution``); ``loss``/``metrics`` are unused.
        """
        groups = self.variable_groups()
        if set(optimizers) != set(groups):
            raise ValueError(
                f"Expected one optimizer per variable group {sorted(groups)}. "
                f"Received: optimizers for {sorted(optimizers)}"
            )
        if len({id(opt) for opt in optimizers.values()}) != len(optimizers):
            raise ValueError("Each variable group needs its own optimizer instance.")
        self._check_groups(groups)
        super().compile(optimizer=None, **kwargs)
        # Keras keeps the order of ``optimizers`` for the JAX state: fix it to group order.
        ordered = {name: optimizers[name] for name in groups}
        self.optimizer = OptimizerGroup(ordered, self.variable_groups)

    def _check_groups(self, groups: Mapping[str, list]) -> None:
        owner = {}
        for name, variables in groups.items():
            for v in variables:
                if id(v) in owner:
                    raise ValueError(
                        f"Variable {v.path} is in groups {owner[id(v)]!r} and {name!r}; "
                        "variable groups must be disjoint."
                    )
                owner[id(v)] = name
        missing = [v.path for v in self.trainable_variables if id(v) not in owner]
        if missing:
            raise ValueError(
                f"Trainable variables in no group (nothing would train them): {missing}"
            )

    def update_trackers(self, logs: Mapping[str, object]) -> dict:
        """Feeds ``logs`` into the Mean trackers and returns their running results."""
        by_name = {t.name: t for t in self.trackers}
        unknown = sorted(set(logs) - set(by_name))
        if unknown:
            raise ValueError(f"compute_losses returned logs without trackers: {unknown}")
        for name, value in logs.items():
            by_name[name].update_state(value)
        return {t.name: t.result() for t in self.trackers}

    def train_step(self, *args):
        """Backend dispatch: ``train_step(data)`` on TensorFlow, ``(state, data)`` on JAX."""
        backend = keras.backend.backend()
        if backend == "tensorflow":
            return self._tf_train_step(*args)
        if backend == "jax":
            return self._jax_train_step(*args)
        raise NotImplementedError(
            f"{type(self).__name__} trains on the tensorflow and jax backends. Received: {backend}"
        )

    def _tf_train_step(self, data):
        import tensorflow as tf

        x, y = _unpack(data)
        with tf.GradientTape(persistent=True) as tape:
            losses, logs = self.compute_losses(x, y, training=True)
        for name, variables in self.variable_groups().items():
            grads = tape.gradient(losses[name], variables)
            # An unconnected variable gets a zero step rather than Keras' "missing grad" skip,
            # so every optimizer's iteration count (and lr schedule) advances together.
            grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
            self.optimizer.by_group[name].apply_gradients(zip(grads, variables))
        del tape
        return self.update_trackers(logs)

    def _jax_train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_values, metric_values = state
        x, y = _unpack(data)
        trainable_refs = self.trainable_variables
        non_trainable_refs = self.non_trainable_variables
        groups = self.variable_groups()
        names = list(self.optimizer.by_group)

        def forward(trainable_values):
            mapping = list(zip(trainable_refs, trainable_values))
            mapping += list(zip(non_trainable_refs, non_trainable))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                losses, logs = self.compute_losses(x, y, training=True)
            new_non_trainable = [
                _current(scope, ref, old) for ref, old in zip(non_trainable_refs, non_trainable)
            ]
            return tuple(losses[name] for name in names), (logs, new_non_trainable)

        group_losses, pullback, (logs, non_trainable) = jax.vjp(forward, trainable, has_aux=True)

        index = {id(v): i for i, v in enumerate(trainable_refs)}
        new_trainable = list(trainable)
        new_optimizer_values = []
        offset = 0
        for k, name in enumerate(names):
            cotangent = tuple(
                jax.numpy.ones_like(loss) if j == k else jax.numpy.zeros_like(loss)
                for j, loss in enumerate(group_losses)
            )
            (grads,) = pullback(cotangent)
            positions = [index[id(v)] for v in groups[name]]
            optimizer = self.optimizer.by_group[name]
            count = len(optimizer.variables)
            updated, opt_values = optimizer.stateless_apply(
                optimizer_values[offset : offset + count],
                [grads[i] for i in positions],
                [trainable[i] for i in positions],
            )
            offset += count
            for i, value in zip(positions, updated):
                new_trainable[i] = value
            new_optimizer_values.extend(opt_values)

        metric_refs = self.metrics_variables
        with keras.StatelessScope(state_mapping=list(zip(metric_refs, metric_values))) as scope:
            logs = self.update_trackers(logs)
        metric_values = [_current(scope, ref, old) for ref, old in zip(metric_refs, metric_values)]
        return logs, (new_trainable, non_trainable, new_optimizer_values, metric_values)


def _unpack(data):
    """``(x, y)`` of a batch as backend tensors (eager JAX batches arrive as NumPy arrays,
    which Keras refuses to mix with traced tensors in one functional call)."""
    x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
    return keras.tree.map_structure(keras.ops.convert_to_tensor, (x, y))


def _current(scope, ref, old):
    """Value of ``ref`` after a stateless scope, or ``old`` when nothing assigned it."""
    value = scope.get_current_value(ref)
    return old if value is None else value
