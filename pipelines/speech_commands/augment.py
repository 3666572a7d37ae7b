"""Training-only waveform augmentation, as a batched tf.data map: time shift and background noise.

It runs in the input pipeline, not in the model, so the served model never sees it and the noise
bank (up to minutes of audio) is not saved with the model. SpecAugment, the feature-level part,
is a layer in the model (`layers.SpecAugment`).
"""

import tensorflow as tf


def waveform_augmenter(noise, shift_samples, noise_probability, noise_max_gain):
    """A function `(waveforms, labels) -> (augmented, labels)` on batches.

    Args:
        noise: 1-D float32 noise bank, longer than a clip.
        shift_samples: Largest time shift either way, in samples (zeros fill in). `0` disables it.
        noise_probability: Chance that a clip gets noise mixed in.
        noise_max_gain: Noise is scaled by a gain drawn uniformly from `[0, noise_max_gain]`.

    Returns:
        A function for `tf.data.Dataset.map` after `batch`.
    """
    bank = tf.constant(noise, dtype=tf.float32)

    def augment(waveforms, labels):
        batch, samples = tf.shape(waveforms)[0], tf.shape(waveforms)[1]
        positions = tf.range(samples)[tf.newaxis, :]
        if shift_samples > 0:
            shift = tf.random.uniform((batch, 1), -shift_samples, shift_samples + 1, dtype=tf.int32)
            source = positions - shift
            inside = (source >= 0) & (source < samples)
            shifted = tf.gather(waveforms, tf.clip_by_value(source, 0, samples - 1), batch_dims=1)
            waveforms = tf.where(inside, shifted, 0.0)
        if noise_probability > 0 and noise_max_gain > 0:
            start = tf.random.uniform((batch, 1), 0, tf.shape(bank)[0] - samples, dtype=tf.int32)
            segment = tf.gather(bank, start + positions)
            gain = tf.random.uniform((batch, 1), 0.0, noise_max_gain)
            gain *= tf.cast(tf.random.uniform((batch, 1)) < noise_probability, tf.float32)
            waveforms = waveforms + gain * segment
        return waveforms, labels

    return augment


def training_dataset(x, y, batch_size, augment=None, seed=0):
    """Shuffled, batched, augmented (when `augment` is given) and prefetched tf.data pipeline."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    if augment is not None:
        dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(x, y, batch_size):
    """Batched, unshuffled, unaugmented tf.data pipeline (validation)."""
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
