"""Browser tests of the dashboard on the real stack."""
