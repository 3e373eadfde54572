"""keras-tuner adapted to searches over ResNets, and only that: the oracles (Hyperband, BOHB,
ASHA), the tuner, the hypermodel, a trial's callbacks and checkpoints, and the one module that
touches keras-tuner's private modules (`kt_internals`)."""
