"""The benchmark harness behind ``make bench``: StreamPulse beside its peers on the local stack.

Everything runs on the real broker and Redis with topic names, consumer groups, app ids and
Redis keys unique to one run, so it can share a machine with tests, and removes what it created.
"""
