"""Speech-command recognition: raw 16 kHz waveforms in, a word label out.

Modules, in the order the data flows: `audio` (WAV reading and checks), `layouts` (which file is
which label and split), `synthetic` (the offline eSpeak NG default data), `data` (clips loaded into
arrays), `augment` (training-only waveform augmentation in tf.data), `layers` (log-mel front end and
SpecAugment, inside the model), `model`, `evaluation`, `serving`, `adaptation` (self-training on a
new speaker's clips) and `task`.
"""
