"""The live ECG service: device sessions, the durable stream store, the annotation
worker pool and the fan-out of live ECG to viewers."""
