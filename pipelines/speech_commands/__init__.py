"""Speech-command recognition: raw 16 kHz waveforms in, a word label out.

Modules, in the order the data flows: `data` (WAV reading and checks, the folder layouts and their
splits, clips loaded into arrays), `synthetic` (the offline eSpeak NG default data), `features`
(the log-mel front end inside the model, and its statistics), `augment` (training-only
augmentation), `model`, `baselines`, `evaluation`, `serving`, `adaptation` (self-training on a new
speaker's clips), `download` and `task` (the config classes and the `Task`).
"""
