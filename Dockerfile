# artdet: the full service (training workers + gRPC + Detect), data in /data.
# Build: docker build -t artdet .      Run: docker run -p 50051:50051 -v artdet-data:/data artdet
# A serving-only image needs no torch: install ".[serve]" instead and run `artdet serve --model-dir DIR`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    TORCH_HOME=/opt/torch-home

RUN useradd --create-home --uid 1000 artdet \
    && mkdir -p /data /opt/torch-home \
    && chown artdet:artdet /data /opt/torch-home

WORKDIR /app
RUN pip install torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md ./
COPY proto proto
COPY detector detector
COPY server server
COPY tools tools
RUN pip install ".[train,serve]"

# COCO weights baked in when the build has network access; otherwise fetched at first use.
USER artdet
RUN python -m tools.fetch_weights

EXPOSE 50051 9100
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD artdet health --server 127.0.0.1:50051 || exit 1
CMD ["artdet", "serve", "--host", "0.0.0.0", "--port", "50051", "--data-dir", "/data", "--metrics-port", "9100"]
