"""The application: data, hypermodel, Hyperband search CLI, TensorBoard logging, export."""
