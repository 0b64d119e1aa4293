# syntax=docker/dockerfile:1
# One image for StreamPulse's three entry points (the README's commands):
#   faust -A app worker           the default command
#   uvicorn api.main:app          the API (--host 0.0.0.0 --port 8000 in compose/docker-compose.yml)
#   python -m producers.replay    ingestion
# The web stage vendors the dashboard's chart library, the build stage resolves the dependencies
# into a virtualenv; the runtime stage holds only that virtualenv, the bundled data and an
# unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The dashboard's chart library from web/package-lock.json, on a pinned Node.js (the stages all
# start from the one Python base image).
FROM ${PYTHON_IMAGE} AS web
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN pip install --no-cache-dir nodeenv==1.9.1 && nodeenv --prebuilt --node=20.19.5 /opt/node
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN PATH=/opt/node/bin:$PATH npm ci --no-audit --no-fund && PATH=/opt/node/bin:$PATH npm run vendor

FROM ${PYTHON_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# README.md stays out of the build context: setup.cfg's long_description is not needed to run.
COPY pyproject.toml setup.cfg requirements.lock ./
# The exact versions of requirements.lock (`make lock`), then the package itself without resolving.
RUN pip install --no-cache-dir -r requirements.lock
COPY app ./app
COPY agents ./agents
COPY tables ./tables
COPY api ./api
COPY --from=web /src/api/static/vendor ./api/static/vendor
COPY producers ./producers
# A regular (not editable) install: the runtime stage needs no source tree.
RUN pip install --no-cache-dir --no-deps .
COPY data/tlc ./data/tlc
# The sample is a random draw across March 2019, while a live feed delivers trips as they end: the
# replay service sends it ordered by drop-off time (as `make demo` does), or most trips would be late.
RUN { head -n 1 data/tlc/tlc_trips_2019-03_sample.csv; \
      tail -n +2 data/tlc/tlc_trips_2019-03_sample.csv | LC_ALL=C sort -s -t, -k3,3; \
    } > data/tlc/tlc_trips_2019-03_by_dropoff.csv

FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
RUN groupadd --system --gid "${UID}" streampulse \
    && useradd --system --uid "${UID}" --gid "${UID}" --no-create-home --home-dir /app streampulse \
    && install -d -o streampulse -g streampulse /var/lib/streampulse
COPY --from=build /opt/venv /opt/venv
COPY --from=build /src/data/tlc /app/data/tlc
WORKDIR /app
# Settings the image decides (the rest come from STREAMPULSE_* at run time, see .env.example):
# RocksDB state in the volume below, the worker's web/metrics port reachable from other containers,
# and the zone names from the bundled copy (the package is installed, not run from a checkout).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STREAMPULSE_DATA_DIR=/var/lib/streampulse \
    STREAMPULSE_WEB_HOST=0.0.0.0 \
    STREAMPULSE_ZONES_FILE=/app/data/tlc/taxi_zones.csv
# Numeric, so a runtime can verify it is not root without reading /etc/passwd.
USER ${UID}:${UID}
# Every container gets its own volume here unless one is mounted: with `--scale worker=N` each
# replica keeps its own RocksDB state, a cache of the changelog topics that is rebuilt if lost.
VOLUME ["/var/lib/streampulse"]
EXPOSE 6066 8000
CMD ["faust", "-A", "app", "worker", "-l", "info"]
