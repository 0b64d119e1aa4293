"""The read side of StreamPulse: a FastAPI app serving window results from Redis (``api.main:app``)."""
