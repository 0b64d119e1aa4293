#!/usr/bin/env bash
# The test command: unit tests, then integration tests on the real Kafka broker and Redis
# (the session fixture reuses `make up`'s stack or starts its own). Fails if any integration
# test was skipped, so a missing service can never pass as green.
set -euo pipefail
cd "$(dirname "$0")/.."
export STREAMPULSE_REQUIRE_INTEGRATION=1
.venv/bin/ruff check .
.venv/bin/mypy app agents tables api producers tests scripts bench support
.venv/bin/lint-imports
exec .venv/bin/pytest "$@"
