"""pipeline.optim: schedules give the expected lr; weight decay and label smoothing really act."""
import math

import numpy as np
import pytest

from models.options import OptionError
from pipeline.config import load_config
from pipeline.optim import ScheduleConfig, keras_schedule, lr_curve, make_optimizer
from pipeline.train import TrainConfig, compile_for_training

LR = 0.1


def curve(name, epochs=10, steps=10, **kw):
    return lr_curve(ScheduleConfig(name, **kw), lr=LR, epochs=epochs, steps_per_epoch=steps)


@pytest.mark.parametrize("c,expected", [
    # warmup ramp: linear, reaching lr at the last warmup step, then the schedule
    (curve("constant", warmup_epochs=2), {0: LR / 20, 9: LR / 2, 19: LR, 20: LR, 99: LR}),
    # step: x0.1 every 3 epochs (30 steps)
    (curve("step", step_epochs=3, gamma=0.1), {0: LR, 29: LR, 30: LR * 0.1, 59: LR * 0.1, 60: LR * 0.01}),
    (curve("step", step_epochs=3, gamma=0.5, warmup_epochs=1), {10: LR, 39: LR, 40: LR / 2}),
    # exponential: gamma per epoch, smooth in between
    (curve("exponential", gamma=0.5), {0: LR, 5: LR * 0.5 ** 0.5, 10: LR / 2, 20: LR / 4}),
    # polynomial: power 2 from lr to min_lr over the run
    (curve("polynomial", power=2.0), {0: LR, 50: LR * 0.25, 100: 0.0}),
    # cosine after 1 warmup epoch: lr at t=0, midpoint halfway, min_lr at the end
    (curve("cosine", warmup_epochs=1, min_lr=0.001), {0: LR / 10, 9: LR, 10: LR, 55: (LR + 0.001) / 2,
                                                       100: 0.001, 150: 0.001}),
])
def test_schedule_values(c, expected):
    for step, lr in expected.items():
        assert c.value(step) == pytest.approx(lr, rel=1e-5, abs=1e-8), f"step {step}"


def test_cosine_is_monotone_after_warmup():
    c = curve("cosine", warmup_epochs=2)
    values = [c.value(s) for s in range(20, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(0.0, abs=1e-9)


def test_warmup_longer_than_run_ends_on_the_ramp():
    c = curve("cosine", epochs=1, warmup_epochs=2)
    assert c.value(9) == pytest.approx(LR / 2)


@pytest.mark.parametrize("engine", ["keras", "tf_keras"])
def test_optimizer_follows_schedule_in_both_engines(engine):
    """One SGD step with gradient 1 moves a weight by exactly lr(step)."""
    k = pytest.importorskip(engine)
    c = curve("step", step_epochs=1, gamma=0.5)
    opt = make_optimizer(k, "sgd", keras_schedule(k, c))
    import tensorflow as tf

    w = (k.Variable if engine == "keras" else tf.Variable)(np.zeros(2, np.float32), name="kernel")
    moves = []
    for _ in range(12):
        before = np.array(w.numpy())
        opt.apply_gradients([(np.ones(2, np.float32), w)])
        moves.append(float(before[0] - w.numpy()[0]))
    assert moves[0] == pytest.approx(LR) and moves[9] == pytest.approx(LR)
    assert moves[10] == pytest.approx(LR / 2) and moves[11] == pytest.approx(LR / 2)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"])
def test_weight_decay_shrinks_kernels_not_batchnorm(name):
    """Zero gradients: only decoupled decay moves weights, w <- w * (1 - lr * wd)."""
    import keras

    opt = make_optimizer(keras, name, 0.5, weight_decay=0.1)
    kernel = keras.Variable(np.ones(3, np.float32), name="kernel")
    gamma = keras.Variable(np.ones(3, np.float32), name="gamma")
    bias = keras.Variable(np.ones(3, np.float32), name="bias")
    zeros = np.zeros(3, np.float32)
    opt.apply_gradients([(zeros, kernel), (zeros, gamma), (zeros, bias)])
    np.testing.assert_allclose(kernel.numpy(), 0.95, rtol=1e-6)
    np.testing.assert_array_equal(gamma.numpy(), 1.0)
    np.testing.assert_array_equal(bias.numpy(), 1.0)


def test_no_weight_decay_leaves_weights():
    import keras

    opt = make_optimizer(keras, "momentum", 0.5, weight_decay=0.0)
    kernel = keras.Variable(np.ones(3, np.float32), name="kernel")
    opt.apply_gradients([(np.zeros(3, np.float32), kernel)])
    np.testing.assert_array_equal(kernel.numpy(), 1.0)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_label_smoothing_is_in_the_training_loss(smoothing):
    """The compiled loss equals cross-entropy against (1 - e) * onehot + e / K."""
    import keras

    from models import create_model

    cfg = load_config(TrainConfig, {"label_smoothing": smoothing})
    model = create_model("lenet_bn", num_classes=4, input_shape=(16, 16, 1), width=0.25)
    compile_for_training(model, keras, cfg, curve("constant"))
    labels = np.arange(8) % 4
    y = np.eye(4, dtype=np.float32)[labels]
    probs = np.full((8, 4), 0.01, np.float32)
    probs[np.arange(8), labels] = 0.97                           # confident and right
    loss = float(model.compute_loss(y=y, y_pred=probs))
    target = (1 - smoothing) * y + smoothing / 4
    expected = float(np.mean(-(target * np.log(probs)).sum(axis=1)))
    assert loss == pytest.approx(expected, rel=1e-4)
    assert loss > 0.5 if smoothing else loss == pytest.approx(-math.log(0.97), rel=1e-4)


@pytest.mark.parametrize("args,message", [
    (["schedule=cosin"], "schedule.name: 'cosin' is not one of"),
    (["schedule.warmup_epochs=-1"], "schedule.warmup_epochs must be >= 0"),
    (["schedule.gamma=2"], "schedule.gamma must be in (0, 1]"),
    (["schedule.step_epoch=3"], "unknown key 'schedule.step_epoch' (did you mean: step_epochs"),
])
def test_schedule_options_are_checked(args, message):
    with pytest.raises(OptionError) as e:
        load_config(TrainConfig, args)
    assert message in str(e.value) and "\n" not in str(e.value)
