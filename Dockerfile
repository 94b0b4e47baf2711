# autolab, for the docker-compose stack: runs campaigns on the digital twin (or, with devices
# passed through, on hardware) and logs them to the stack's MLflow server.
# Installed like scripts/bootstrap.sh does, pinned by constraints.txt; torch 2.13.0 comes from
# PyTorch's CPU index so no CUDA packages are pulled (several GB).
FROM python:3.11-slim-bookworm
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
WORKDIR /opt/autolab
COPY constraints.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu \
      "torch==$(sed -n 's/^torch==//p' constraints.txt)"
COPY pyproject.toml README.md ./
COPY autolab ./autolab
COPY campaigns ./campaigns
RUN pip install -c constraints.txt . \
 && useradd --create-home --uid 10001 autolab \
 && mkdir -p /data/runs && chown -R autolab:autolab /data
USER autolab
# Campaign paths are relative to the source tree (campaigns/...); journals go to /data/runs.
CMD ["autolab", "run", "campaigns/target_550nm.yaml", "--runs-dir", "/data/runs"]
