"""Audio denoising: a conditional diffusion model on the compressed complex STFT that starts from
the noisy recording.

    io (probe, scan, blocks) -> stream (chunks, crossfades) -> bands (16 kHz model band + kept high band)
        -> estimate (noise PSD, SNR, sigma) -> denoise (t*, start_from_observation, DDIM) -> metrics

Entry point: :func:`restore.audio.pipeline.restore_audio`.
"""
