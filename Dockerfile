FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY retention ./retention
COPY migrations ./migrations
RUN pip install --no-cache-dir . && useradd --create-home retention
USER retention
ENTRYPOINT ["retention"]
CMD ["--help"]
