"""The pure domain: window math, the aggregate value type, partition state and time formatting.

Nothing here does I/O or imports the Faust app, so it is tested without services; the Faust table
that stores this state lives in :mod:`app.state`."""
