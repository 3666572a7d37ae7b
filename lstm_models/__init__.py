"""Keras 3 builders for recurrent models: one interface for every variant.

Importing this package registers its custom layers, so `keras.models.load_model(path)` reloads a
saved model with safe mode on and no `custom_objects`.
"""

from lstm_models.attention import TemporalAttention, attention_weights
from lstm_models.builders import HEADS, VARIANTS, build_model, recurrent_layer
from lstm_models.fused import LSTM as FusedLSTM
from lstm_models.peephole import PeepholeLSTM, PeepholeLSTMCell

__all__ = [
    "FusedLSTM",
    "HEADS",
    "VARIANTS",
    "PeepholeLSTM",
    "PeepholeLSTMCell",
    "TemporalAttention",
    "attention_weights",
    "build_model",
    "recurrent_layer",
]
