"""TensorBoard files written without TensorFlow, read back by TensorBoard's reader and its server."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from .test_search import read_tensorboard

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUN = "trial_0000"
HPARAMS = {"depth": 8, "optimizer": "sgd", "learning_rate": 0.01, "preact": True, "bracket": 1,
           "stage_depths": [2, 2]}  # not a scalar: left out of the session
LR0, DECAY, STEPS_PER_EPOCH = 0.1, 0.5, 2


def write_run(logdir: str) -> None:
    """What a search writes for one configuration promoted once: experiment config, two fits into one run
    (epochs 0-1, then 2), a failure status and an extra scalar. Runs on whichever Keras backend is set."""
    import keras
    import keras_tuner as kt

    from tuning.observe import tensorboard as tb

    logdir = pathlib.Path(logdir)
    hp = kt.HyperParameters()
    hp.Int("depth", 6, 20, step=2)
    hp.Choice("optimizer", ["sgd", "adam"])
    hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
    hp.Float("sgd_learning_rate", 1e-3, 0.5)  # an alias: one column with both ranges
    hp.Boolean("preact")
    hp.Choice("batch_size", [64, 32])
    tb.write_experiment_config(logdir, hp.space, {"sgd_learning_rate": "learning_rate"})

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 3, 32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    schedule = keras.optimizers.schedules.ExponentialDecay(LR0, decay_steps=1, decay_rate=DECAY)
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    run = logdir / RUN
    for start, end in ((0, 2), (2, 3)):  # round 0, then the promoted round 1 continues the run
        logger = tb.TrialLogger(run, RUN, HPARAMS, params=model.count_params(), flops=123, bracket=1,
                                round_num=int(start > 0), first_round=start == 0,
                                best_so_far=None if start == 0 else 1.0)
        model.fit(x, y, batch_size=32 // STEPS_PER_EPOCH, initial_epoch=start, epochs=end, verbose=0,
                  validation_data=(x[:8], y[:8]), callbacks=[tb.tensorboard_callback(run), logger])
    tb.write_status(run, "trial 0001 FAILED: injected fault")
    tb.write_scalars(run, {"compile_seconds": 1.5}, step=2)


def read_back(logdir: pathlib.Path):
    """`read_tensorboard`'s (multiplexer, sessions, experiment, scalars), having checked that every
    HParams session names its run and has a start time."""
    from tensorboard.plugins.hparams import metadata

    mux, sessions, experiment, scalars = read_tensorboard(logdir)
    for run, tags in mux.PluginRunToTagToContent(metadata.PLUGIN_NAME).items():
        if metadata.SESSION_START_INFO_TAG in tags:
            info = metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
            assert info.group_name == run and info.start_time_secs > 0
    return mux, sessions, experiment, scalars


def check_run(logdir: pathlib.Path) -> None:
    from tensorboard.plugins.hparams import api_pb2

    mux, sessions, experiment, scalars = read_back(logdir)
    assert all(p.name.startswith("events.out.tfevents.") for p in logdir.rglob("*") if p.is_file())
    infos = {h.name: h for h in experiment.hparam_infos}
    assert list(infos) == ["depth", "optimizer", "learning_rate", "preact", "batch_size",
                           "downsample_at", "stage_depths", "layers", "bracket"]
    assert (infos["depth"].type, infos["depth"].domain_interval.min_value,
            infos["depth"].domain_interval.max_value) == (api_pb2.DATA_TYPE_FLOAT64, 6, 20)
    assert (infos["learning_rate"].domain_interval.min_value,
            infos["learning_rate"].domain_interval.max_value) == (pytest.approx(1e-4), 0.5)
    assert infos["optimizer"].type == api_pb2.DATA_TYPE_STRING
    assert [v.string_value for v in infos["optimizer"].domain_discrete.values] == ["adam", "sgd"]
    assert infos["preact"].type == api_pb2.DATA_TYPE_BOOL
    assert [v.bool_value for v in infos["preact"].domain_discrete.values] == [False, True]
    assert [v.number_value for v in infos["batch_size"].domain_discrete.values] == [32, 64]
    assert infos["bracket"].type == api_pb2.DATA_TYPE_UNSET and not infos["bracket"].HasField("domain_discrete")
    metrics = {(m.name.group, m.name.tag): m.display_name for m in experiment.metric_infos}
    assert metrics[("validation", "epoch_accuracy")] == "val_accuracy" and ("", "flops") in metrics

    assert sessions == {RUN: {"depth": 8.0, "optimizer": "sgd", "learning_rate": 0.01, "preact": True,
                              "bracket": 1.0}}
    assert scalars(RUN, "params") == [(0, 15.0)] and scalars(RUN, "flops") == [(0, 123.0)]
    assert "| depth | 8 |" in mux.Tensors(RUN, "hyperparameters")[0].tensor_proto.string_val[0].decode()
    assert [s for s, _ in scalars(f"{RUN}/validation", "epoch_accuracy")] == [0, 1, 2]
    assert [s for s, _ in scalars(f"{RUN}/validation", "epoch_loss")] == [0, 1, 2]
    assert [s for s, _ in scalars(f"{RUN}/train", "epoch_loss")] == [0, 1, 2]
    assert "epoch_val_loss" not in mux.Runs()[f"{RUN}/train"]["tensors"]
    # The schedule's rate at each epoch's end: STEPS_PER_EPOCH decays per epoch.
    lr = scalars(f"{RUN}/train", "epoch_learning_rate")
    assert lr == [(e, pytest.approx(LR0 * DECAY ** (STEPS_PER_EPOCH * (e + 1)))) for e in range(3)]
    assert scalars(RUN, "hyperband/round") == [(0, 0.0), (1, 0.0), (2, 1.0)]
    best = scalars(RUN, "best_val_accuracy")
    assert [s for s, _ in best] == [0, 1, 2] and best[0][1] <= best[1][1] and best[2] == (2, 1.0)
    status = mux.Tensors(RUN, "status")[0].tensor_proto.string_val[0].decode()
    assert status == "trial 0001 FAILED: injected fault" and scalars(RUN, "failed") == [(0, 1.0)]
    assert scalars(RUN, "compile_seconds") == [(2, 1.5)]


def test_writes_without_tensorflow_on_jax(no_tf_env, tmp_path):
    script = ("import sys\nfrom tests.test_tensorboard_log import write_run\nwrite_run(sys.argv[1])\n"
              "assert 'jax' in sys.modules and 'tensorflow' not in sys.modules, sorted(sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "tb")], env=no_tf_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_run(tmp_path / "tb")


def test_jax_process_with_tensorflow_installed_does_not_import_it(tmp_path):
    """TensorBoard's EventFileWriter would import TensorFlow here (tf.io.gfile); our writer must not."""
    script = ("import sys\nfrom tuning.observe import tensorboard as tb\n"
              "tb.write_status(sys.argv[1], 'x'); tb.write_scalars(sys.argv[1], {'a': 1.0}, step=0)\n"
              "logger = tb.TrialLogger(sys.argv[1], 'r', {'a': 1}, 1, 1, 0, 0, first_round=True)\n"
              "logger.on_train_begin(); logger.on_epoch_end(0, {'val_accuracy': 0.5}); logger.on_train_end()\n"
              "assert 'tensorflow' not in sys.modules\n")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 3  # one file per writer


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tensorboard_server_lists_the_session(tmp_path):
    write_run(str(tmp_path / "tb"))  # in-process, on the test process's backend
    port = _free_port()
    base = f"http://127.0.0.1:{port}/data/plugin/hparams"
    log = tmp_path / "tensorboard.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(tmp_path / "tb"),
                                   "--host", "127.0.0.1", "--port", str(port)], stdout=out, stderr=out)
    try:
        deadline, groups = time.monotonic() + 60, []
        while not groups:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
            try:  # the bodies TensorBoard's frontend sends (webapp/hparams/_redux/hparams_data_source.ts)
                experiment = _post(f"{base}/experiment", {"experimentName": ""})
                cols = [{"hparam": h["name"]} for h in experiment.get("hparamInfos", [])]
                cols += [{"metric": m["name"]} for m in experiment.get("metricInfos", [])]
                groups = _post(f"{base}/session_groups", {
                    "experimentName": "", "colParams": cols, "startIndex": 0, "sliceSize": 1000000,
                    "allowedStatuses": ["STATUS_FAILURE", "STATUS_RUNNING", "STATUS_SUCCESS", "STATUS_UNKNOWN"],
                }).get("sessionGroups", [])
            except (urllib.error.URLError, ConnectionError):
                continue
    finally:
        server.terminate()
        server.wait(timeout=30)
    infos = {h["name"]: h for h in experiment["hparamInfos"]}  # sorted by name
    assert set(infos) == {"depth", "optimizer", "learning_rate", "preact", "batch_size", "downsample_at",
                          "stage_depths", "layers", "bracket"}
    assert infos["optimizer"]["domainDiscrete"] == ["adam", "sgd"]
    assert infos["depth"]["domainInterval"] == {"minValue": 6, "maxValue": 20}
    [group] = groups
    assert group["name"] == RUN and [s["name"] for s in group["sessions"]] == [RUN]
    assert group["hparams"] == {"depth": 8, "optimizer": "sgd", "learning_rate": 0.01, "preact": True, "bracket": 1}
    values = {(m["name"].get("group", ""), m["name"]["tag"]): m for m in group["metricValues"]}
    assert values[("", "params")]["value"] == 15
    assert values[("validation", "epoch_accuracy")]["trainingStep"] == 2
