"""Subprocess side of tests/test_robustness.py: what needs a fresh process (logical devices,
TF_CONFIG workers) or a process to kill.

    python robustness_helper.py mirrored OUT.json     # 2 logical CPUs vs 1, every family
    python robustness_helper.py worker OUT.npz        # one MultiWorkerMirroredStrategy worker
    python robustness_helper.py train CLI_ARGS...     # `tfvae train`; TFVAE_DIE_AT=E:B kills it
    python robustness_helper.py export-loop DIR       # export again and again until killed
"""
import json
import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def digits(n):
    from sklearn.datasets import load_digits

    return (load_digits().images[:n, :, :, None] / 16.0).astype(np.float32)


def mirrored(out):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]  # before TensorFlow initializes its devices
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import tf_keras

    import tfvae
    from tfvae.models.base import LatentVariableModel, inputs_of

    x = digits(51)  # batches of 16, 16, 16 and 3: the last splits 2 / 1 over two replicas

    # One strategy per device set: strategies made in one process number their collective ops
    # alike, and ops of two strategies with the same number but other shapes would collide.
    one_device = tf.distribute.MirroredStrategy(["/cpu:0"])
    two_devices = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def train(strategy, learning_rate):
        with strategy.scope():
            tf_keras.utils.set_random_seed(0)
            model = tfvae.models.get("ae", input_shape=(8, 8, 1), latent_dim=3, hidden_units=(16,))
            model.compile(optimizer=tf_keras.optimizers.SGD(learning_rate), jit_compile=False)
        initial = [w.numpy() for w in model.trainable_variables]
        model.fit(tf.data.Dataset.from_tensor_slices(x).batch(16), epochs=3, verbose=0)
        return initial, [w.numpy() for w in model.trainable_variables]

    def gap(a, b):
        return float(max(np.abs(u - v).max() for u, v in zip(a, b)))

    _, two = train(two_devices, 0.1)
    # What dividing each replica's mean by the number of replicas does (the usual recipe): right
    # for even splits only.
    exact_step = LatentVariableModel.train_step

    def per_replica_mean_step(self, data):
        x = tf.convert_to_tensor(inputs_of(data), tf.float32)
        with tf.GradientTape() as tape:
            terms = self.compute_terms(x, training=True)
            loss = tf.reduce_mean(terms["loss"]) / self.distribute_strategy.num_replicas_in_sync
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self._report(terms)

    LatentVariableModel.train_step = per_replica_mean_step
    _, per_replica_mean = train(two_devices, 0.1)
    LatentVariableModel.train_step = exact_step
    initial, one = train(one_device, 0.1)
    # What forgetting the division would do: the replicas' summed gradients are twice too big.
    _, doubled = train(one_device, 0.2)

    result = {"replicas": two_devices.num_replicas_in_sync,
              "moved": gap(initial, one), "two_vs_one": gap(two, one),
              "doubled_vs_one": gap(doubled, one),
              "per_replica_mean_vs_one": gap(per_replica_mean, one), "families": {}}
    strategy = two_devices
    for name in tfvae.models.names():
        with strategy.scope():
            tf_keras.utils.set_random_seed(0)
            model = tfvae.models.get(name, input_shape=(8, 8, 1),
                                     **tfvae.models.get_class(name).example_config)
            model.compile()
        history = model.fit(x[:32], batch_size=16, epochs=1, verbose=0)
        result["families"][name] = history.history["loss"]
    with open(out, "w") as handle:
        json.dump(result, handle)


def worker(out):
    import tensorflow as tf
    import tf_keras

    from tfvae import training

    strategy = training.strategy_from_name("multiworker")
    import tfvae

    with strategy.scope():
        tf_keras.utils.set_random_seed(0)
        model = tfvae.models.get("ae", input_shape=(8, 8, 1), latent_dim=3, hidden_units=(16,))
        model.compile(optimizer=tf_keras.optimizers.SGD(0.1), jit_compile=False)
    initial = [w.numpy() for w in model.trainable_variables]
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices(digits(64)).batch(16).with_options(options)
    history = model.fit(dataset, epochs=2, verbose=0)
    np.savez(out, replicas=strategy.num_replicas_in_sync, loss=history.history["loss"],
             moved=max(np.abs(a - w.numpy()).max()
                       for a, w in zip(initial, model.trainable_variables)),
             **{f"w{i}": w.numpy() for i, w in enumerate(model.trainable_variables)})


def train(argv):
    import tf_keras

    from tfvae import cli, training

    if os.environ.get("TFVAE_DIE_AT"):
        epoch, batch = (int(part) for part in os.environ["TFVAE_DIE_AT"].split(":"))

        class Die(tf_keras.callbacks.Callback):
            def on_epoch_begin(self, e, logs=None):
                self.epoch = e

            def on_train_batch_end(self, b, logs=None):
                if (self.epoch, b) == (epoch, batch):
                    print(f"killing myself at epoch {epoch}, step {batch}", file=sys.stderr,
                          flush=True)
                    os.kill(os.getpid(), signal.SIGKILL)

        fit_resumable = training.fit_resumable

        def dying_fit_resumable(*args, callbacks=(), **kwargs):
            return fit_resumable(*args, callbacks=[*callbacks, Die()], **kwargs)

        training.fit_resumable = dying_fit_resumable
    sys.exit(cli.main(argv))


def export_loop(directory):
    import tf_keras

    import tfvae

    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.get("vae", input_shape=(8, 8, 1), latent_dim=2, hidden_units=(8,))
    while True:
        start = time.perf_counter()
        path = tfvae.export(model, directory)
        print(f"{path.name} {time.perf_counter() - start:.3f}", flush=True)


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    {"mirrored": lambda: mirrored(*rest), "worker": lambda: worker(*rest),
     "train": lambda: train(rest), "export-loop": lambda: export_loop(*rest)}[mode]()
