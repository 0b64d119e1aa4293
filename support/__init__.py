"""Test and benchmark support: the one reference computation, process and Kafka helpers.

Used by ``tests/`` and ``bench/`` alike, so both check the product against the same reading of
the contract and drive it the same way. The product never imports this package.
"""
