# One image for the profiler server (EXTRAS=server, the default) and the device agent
# (EXTRAS=agent: adds CPU torch 2.13.0, ONNX Runtime and Google's adb client).
#   docker build -t hwnas-server .
#   docker build -t hwnas-agent --build-arg EXTRAS=agent .
FROM python:3.11-slim

ARG EXTRAS=server
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN if [ "$EXTRAS" = "agent" ]; then \
      apt-get update && apt-get install -y --no-install-recommends adb && rm -rf /var/lib/apt/lists/* && \
      pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu; \
    fi

COPY pyproject.toml README.md alembic.ini ./
COPY hwnas ./hwnas
COPY profiler_server ./profiler_server
COPY migrations ./migrations
COPY device_agent ./device_agent
COPY search ./search
RUN pip install ".[${EXTRAS}]"

RUN useradd --create-home hwnas
USER hwnas
EXPOSE 8000
# The server migrates the database, then serves (compose spells both steps out).
CMD ["profiler-server", "serve", "--host", "0.0.0.0", "--port", "8000"]
