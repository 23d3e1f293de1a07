# One image for every process: `docker run IMAGE consumer bookkeeping`, `... clock`, `... run`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY consumers consumers
COPY services services
RUN pip install --no-cache-dir . && python -c "import services.__main__"
ENV BACKOFFICE_LOG_FORMAT=json
USER nobody
ENTRYPOINT ["python", "-m", "services"]
CMD ["run"]
