FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY retention ./retention
# The runtime user, and the mount points of docker-compose.yml's volumes owned by it: a named
# volume starts as a copy of its mount point in the image, owner and mode included.
RUN pip install --no-cache-dir . \
    && useradd --create-home retention \
    && mkdir -p /var/lib/app /etc/retention \
    && chown retention:retention /var/lib/app
USER retention
ENTRYPOINT ["retention"]
CMD ["--help"]
