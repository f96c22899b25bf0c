# nurture in a container: `docker compose up` runs it with PostgreSQL (docker-compose.yml;
# docs/deploy.md). The image holds the code only: no config, no campaigns, no secret. The
# project (config.yaml, campaigns/, templates/) is mounted at /srv/nurture, and the secrets
# come from the environment at run time (an env file the compose file names).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY pyproject.toml setup.py MANIFEST.in README.md config.yaml ./
COPY nurture ./nurture
COPY campaigns ./campaigns
COPY templates ./templates
COPY docs ./docs
# A real (non-editable) install: the wheel carries the examples, the base layout and the
# guides (`nurture docs`).
RUN pip install ".[postgres]" \
 && rm -rf /build \
 && useradd --system --uid 10001 --user-group --home-dir /srv/nurture --create-home nurture

WORKDIR /srv/nurture
USER nurture

# 8080: the public tracker (/c, /u, /o, /healthz); 8081: the reps' app (and /metrics).
EXPOSE 8080 8081
# /healthz answers "ok" once the tracker serves; set tracking.listen to 0.0.0.0:8080.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

# Logs as one JSON object a line on stderr; SIGTERM drains sends and flushes the click ledger.
STOPSIGNAL SIGTERM
ENTRYPOINT ["nurture", "--log-format", "json"]
CMD ["run"]
