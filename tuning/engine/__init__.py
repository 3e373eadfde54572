"""The search engine on top of keras-tuner: oracle, tuner, trial callbacks, hypermodel,
checkpoints, and the trial process. Only `kt_internals` imports keras-tuner's private modules."""
