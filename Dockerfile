# Worker image for docker-compose.yml and Kubernetes (deploy/k8s).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY streams ./streams
COPY schemas ./schemas
# Dependencies first, then the domain core compiled with mypyc against them (docs/adr/0018); gcc only for the build.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install --no-cache-dir 'mypy>=1.10' wheel 'setuptools>=77' \
 && CHURNWATCH_COMPILE=0 pip install --no-cache-dir '.[rocksdb]' \
 && CHURNWATCH_COMPILE=1 pip install --no-cache-dir --no-build-isolation --no-deps --force-reinstall . \
 && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
USER 65534
EXPOSE 6066
CMD ["churnwatch", "worker"]
