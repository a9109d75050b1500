# alertpilot's container image: one process serving HTTP on :8080 (webhooks, read API, /healthz, /readyz,
# /metrics, /telegram/webhook, /wecom/callback). The same image runs the schema migrations
# (`alertpilot db upgrade`) and the configuration check (`alertpilot doctor`).
#
#   docker build -t alertpilot:local .
#   docker run --rm -p 8080:8080 alertpilot:local              # SQLite in /app/data: one container only
#   docker compose -f deploy/docker-compose.yml up -d          # PostgreSQL, 2 replicas, a load balancer
#
# Configuration is ALERTPILOT_* environment variables (README.md, "Configuration"); nothing is baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package needs (README.md: pyproject's readme). tests/, bench/, deploy/ stay out.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY services ./services
COPY storage ./storage
COPY templates ./templates

# A regular (non-editable) install; the message templates are package data (pyproject.toml).
RUN pip install . && rm -rf /src

# A fixed, numeric non-root user (Kubernetes' runAsNonRoot can check a numeric USER). /app/data is only
# for the embedded SQLite default; with PostgreSQL nothing is written to disk.
RUN groupadd --system --gid 10001 alertpilot \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin alertpilot \
 && mkdir -p /app/data \
 && chown -R 10001:10001 /app
WORKDIR /app
USER 10001:10001

# Inside a container the server must listen on every interface, not the default 127.0.0.1.
ENV ALERTPILOT_HTTP_HOST=0.0.0.0 \
    ALERTPILOT_HTTP_PORT=8080
EXPOSE 8080

# Liveness: the process answers and its database answers (503 otherwise). Replicas behind a load
# balancer also have GET /readyz (503 while starting or draining); docker-compose.yml checks that one.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ALERTPILOT_HTTP_PORT', '8080'), timeout=4)" || exit 1

# Exec form: alertpilot is PID 1 and gets SIGTERM itself. It stops accepting, finishes in-flight work,
# flushes the outbox and exits: allow it 10 s + ALERTPILOT_SHUTDOWN_GRACE_SECONDS (20) and a margin
# (compose stop_grace_period, Kubernetes terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
CMD ["alertpilot"]
