"""Ingestion: ``python -m producers.replay`` turns trip files or a synthetic stream into events on Kafka.

Parsing (:mod:`producers.parsers`, :mod:`producers.tlc`, :mod:`producers.localtime`) and the
synthetic generator are pure, so they are tested without a broker; :mod:`producers.sources` does
the file I/O and :mod:`producers.kafka_out` the Kafka I/O.
"""
