FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY retention ./retention
RUN pip install --no-cache-dir . && useradd --create-home retention
USER retention
ENTRYPOINT ["retention"]
CMD ["--help"]
