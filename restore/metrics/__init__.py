"""Quality metrics: image metrics for MRI here; audio metrics live beside the audio code."""
