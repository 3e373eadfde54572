"""The one module that touches keras-tuner's private modules (``keras_tuner.src``), and the list
of keras-tuner's private members the engine relies on.

keras-tuner is pinned to one minor version (`tuning.runtime.check_keras_tuner`), since none of
this is its public API. Before allowing a new version, check every name below against it
(``tests/test_config.py`` checks that they still exist).
"""

from keras_tuner.src import config as _kt_config
from keras_tuner.src.engine.tuner_utils import SaveBestEpoch, TunerCallback
from keras_tuner.src.tuners.hyperband import HyperbandOracle

__all__ = ["HyperbandOracle", "SaveBestEpoch", "TunerCallback", "keras_tuner_debug", "serve_until_done",
           "PRIVATE_MEMBERS"]

# (class, members): what `ResNetOracle` (engine/oracle.py), the other oracles (engine/algorithms.py,
# bench/simulate.py) and `ResNetTuner` (engine/tuner.py) override, call, read or set
# (tests/test_architecture.py checks that every one used is here). ResNetTuner subclasses
# keras_tuner.Hyperband but calls keras_tuner.Tuner's __init__ with its own oracle, and replaces
# run_trial (so callbacks are never deep-copied).
PRIVATE_MEMBERS = {
    "HyperbandOracle": (
        # overridden
        "_random_values", "_random_trial", "_save_trial", "_check_consecutive_failures",
        # called, read or set
        "_brackets", "_current_bracket", "_current_iteration", "_get_size", "_get_epochs", "_get_num_brackets",
        "_get_num_rounds", "_remove_completed_brackets", "_increment_bracket_num", "_start_new_bracket",
        "_get_trial_dir", "_get_oracle_fname", "_duplicate",
        # the surrogate benchmark's offline oracles (bench/simulate.py)
        "_seed_state", "_display", "_set_project_dir",
    ),
    "Tuner": (
        # overridden
        "_populate_initial_space", "_configure_tensorboard_dir", "_get_checkpoint_fname", "_build_hypermodel",
        "_try_build", "_build_and_fit_model",
        # called
        "_is_worker", "_get_tuner_fname",
    ),
    # keras_tuner.src.distribute.oracle_chief: replaced (start_server) or used (see `serve_until_done`)
    "oracle_chief": ("start_server", "OracleServicer", "exit_chief", "protos"),
}

CHIEF_POLL_SECONDS = 0.5
CHIEF_TICK_SECONDS = 2.0


def serve_until_done(tick=None) -> None:
    """Make the chief's oracle server end as soon as the last worker is done, calling `tick` as
    it starts serving and then every `CHIEF_TICK_SECONDS`.

    keras-tuner's `start_server`, once one worker has been told to stop, checks every 20 seconds
    whether the others are done too, so a distributed search could sit idle for up to 20 s before
    its end. This serves the same servicer and checks every `CHIEF_POLL_SECONDS`. Imported only in
    a chief (keras-tuner imports its gRPC protos late, for the same reason)."""
    import os
    import time
    from concurrent import futures

    import grpc
    from keras_tuner.src.distribute import oracle_chief

    def start_server(oracle):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        servicer = oracle_chief.OracleServicer(oracle)
        oracle_chief.protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
        server.add_insecure_port(f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}")
        server.start()
        ticked = float("-inf")  # the first tick comes at once
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(CHIEF_POLL_SECONDS)
            if tick is not None and time.monotonic() - ticked >= CHIEF_TICK_SECONDS:
                tick()
                ticked = time.monotonic()

    oracle_chief.start_server = start_server


def keras_tuner_debug(on: bool) -> None:
    """keras-tuner's DEBUG flag (it prints every failed trial's traceback when on)."""
    _kt_config.DEBUG = on
