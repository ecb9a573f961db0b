# artdet images, configured by environment: every `artdet serve` flag is also ARTDET_<FLAG>, and CMD and
# HEALTHCHECK both read those variables (port, TLS), so the health check follows what the server serves.
#   docker build -t artdet .                          full service (training + gRPC + Detect), data in /data
#   docker build --target serve -t artdet-serve .     Detect-only replica of /data/models, no torch
# The server listens on 0.0.0.0, so it needs tokens: -e ARTDET_TOKENS='TOKEN=admin' or a mounted file named
# by ARTDET_TOKENS_FILE; without them it refuses to start unless run as `artdet serve --insecure`.
#   docker run -p 50051:50051 -p 8051:8051 -v artdet-data:/data -e ARTDET_TOKENS_FILE=/run/secrets/tokens.json artdet
# TLS: -e ARTDET_TLS_CERT=... -e ARTDET_TLS_KEY=... (and ARTDET_TLS_SERVER_NAME when the certificate does
# not name localhost: the health check connects to localhost and verifies against ARTDET_TLS_CERT).

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ARTDET_HOST=0.0.0.0 \
    ARTDET_PORT=50051 \
    ARTDET_METRICS_PORT=9100 \
    ARTDET_DATA_DIR=/data
RUN useradd --create-home --uid 1000 artdet \
    && mkdir -p /data \
    && chown artdet:artdet /data
WORKDIR /app
# pyproject.toml's dependency lists (requirements/core.txt, and one file per extra) are installed before the
# source is copied in, so a code change reuses these layers.
COPY pyproject.toml README.md ./
RUN python -c 'import pathlib, tomllib; \
project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]; \
lists = {"core": project["dependencies"], **project["optional-dependencies"]}; \
pathlib.Path("requirements").mkdir(); \
[pathlib.Path(f"requirements/{name}.txt").write_text("\n".join(names)) for name, names in lists.items()]' \
    && pip install --requirement requirements/core.txt --requirement requirements/serve.txt
VOLUME ["/data"]
EXPOSE $ARTDET_PORT $ARTDET_METRICS_PORT
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["sh", "-c", "artdet health || exit 1"]

# Detect-only replica: serves the models directory of a full server's data (mounted read-only is fine).
FROM base AS serve
ENV ARTDET_MODEL_DIR=/data/models
COPY proto proto
COPY detector detector
COPY server server
COPY tools tools
RUN pip install --no-deps .
USER 1000:1000
CMD ["artdet", "serve"]

# The full service: training workers need torch; the web console on 8051 (the same tokens as the gRPC port).
FROM base AS full
ENV TORCH_HOME=/opt/torch-home \
    ARTDET_CONSOLE_HOST=0.0.0.0 \
    ARTDET_CONSOLE_PORT=8051
EXPOSE $ARTDET_CONSOLE_PORT
# torch first, spelled exactly so pip takes the pinned wheels (as tools/setup.sh does)
RUN pip install torch==2.14.1 torchvision==0.29.1 \
    && pip install --requirement requirements/train.txt --requirement requirements/console.txt \
    && mkdir -p /opt/torch-home \
    && chown artdet:artdet /opt/torch-home
COPY proto proto
COPY detector detector
COPY server server
COPY tools tools
RUN pip install --no-deps .
USER 1000:1000
# COCO weights baked in when the build has network access; otherwise fetched at first use.
RUN python -m artdet.tools.fetch_weights
CMD ["artdet", "serve"]
