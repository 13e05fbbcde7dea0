# The image every job of a Kubernetes (or cloud batch) run executes in: the package,
# Snakemake and the S3 storage plugin at the versions the test suite checked, and the
# model's weights, since jobs share no filesystem. Not built by the test suite (no
# container runtime there); kept minimal. Build from the repository root:
#   docker build -t ghcr.io/your-org/s2basemap:0.1.0 .
FROM python:3.11-slim

# git: Snakemake lists a run's sources with it
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/s2basemap
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . \
        "snakemake==9.27.1" \
        "snakemake-storage-plugin-s3==0.3.6" \
        "snakemake-executor-plugin-kubernetes==0.5.1"

# OmniCloudMask's weights inside the image, outside /workdir (the pod's empty working
# directory): set mask.ocm.weights_dir to this folder in the run's config
ENV S2BASEMAP_WEIGHTS=/opt/s2basemap/models/omnicloudmask
RUN python -c "from s2basemap.ocm import download_weights; download_weights('$S2BASEMAP_WEIGHTS', 4.0)"

WORKDIR /workdir
