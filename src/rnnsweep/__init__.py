"""rnnsweep: tracked hyperparameter searches comparing LSTM, GRU and tanh RNN cells."""

__version__ = "0.1.0"
