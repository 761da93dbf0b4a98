# Worker image for docker-compose.yml and Kubernetes (deploy/k8s).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
RUN pip install --no-cache-dir '.[rocksdb]'
USER 65534
EXPOSE 6066
CMD ["churnwatch", "worker"]
