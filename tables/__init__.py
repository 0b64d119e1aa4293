"""State of the pipeline: window math, the aggregate value type, and the Faust table definitions."""
