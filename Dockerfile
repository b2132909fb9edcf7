# The image of the segloop-gpu work pool (prefect.yaml): segloop, its flows and pipelines.
#   docker build -t segloop:latest .
# torch's Linux wheels from PyPI bring their CUDA libraries; the host needs only the NVIDIA
# driver and the NVIDIA container runtime. Model weights are not baked in: mount the
# Hugging Face cache (/root/.cache/huggingface) or set models.*.checkpoint to a mounted path.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/segloop
COPY pyproject.toml README.md ./
COPY src ./src
COPY flows ./flows
COPY tasks ./tasks
RUN pip install --no-cache-dir . prefect-docker

COPY pipelines ./pipelines
COPY prefect.yaml params.yaml dvc.yaml ./

# git identity for the workspace commits segloop makes (repo-local ones are set if missing)
ENV HF_HUB_OFFLINE=1 \
    DVC_NO_ANALYTICS=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
