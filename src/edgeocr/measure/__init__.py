"""The measuring library: accuracy metrics, evaluation of labelled crops, timing and resources, and the
engine protocol every measured recogniser follows. Below training, optimisation and the benchmark,
which all score and time models the same way through it; it imports only the runtime and the data
readers."""
