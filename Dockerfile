# syntax=docker/dockerfile:1
# cryptolake: the pipeline image. Built from uv.lock, so the image runs exactly the versions
# CI tested; DuckDB's postgres, ducklake, sqlite and httpfs extensions are installed at build time from
# their wheels (no download at run time, signature checks on).

FROM python:3.11.14-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Optional extras to install: `--build-arg EXTRAS=dagster` builds the Dagster image of
# docker-compose.yml's `dagster` profile.
ARG EXTRAS=""
# Dependencies first: this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project ${EXTRAS:+--extra "$EXTRAS"}
COPY src ./src
COPY sql ./sql
RUN uv sync --locked --no-dev --no-editable ${EXTRAS:+--extra "$EXTRAS"}


FROM python:3.11.14-slim-bookworm
RUN groupadd --gid 10001 cryptolake \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin cryptolake \
    && mkdir -p /data/lake /data/dagster \
    && chown 10001:10001 /data/lake /data/dagster
COPY --from=build --chown=10001:10001 /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CRYPTOLAKE_LAKE=/data/lake
USER 10001:10001
WORKDIR /home/cryptolake
# Install the extension into the user's DuckDB extension folder now, from the wheel.
RUN python -c "import duckdb; from cryptolake.extensions import WHEELS, load_extension; con = duckdb.connect(); [load_extension(con, name) for name in WHEELS]"
VOLUME ["/data/lake"]
# Healthy while the lake is fresh (allow the first run time to land: see start-period).
HEALTHCHECK --interval=5m --timeout=30s --start-period=15m --retries=3 \
    CMD ["cryptolake", "status", "--fail-if-stale", "--json"]
ENTRYPOINT ["cryptolake"]
CMD ["schedule", "--every", "6h", "--now"]
