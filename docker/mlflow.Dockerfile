# The MLflow tracking server of docker-compose.yml: PostgreSQL backend store, served artifacts.
# The MLflow version matches the one autolab is tested with (the client and server share a schema).
FROM python:3.11-slim-bookworm
ARG MLFLOW_VERSION=3.17.2
RUN pip install --no-cache-dir "mlflow==${MLFLOW_VERSION}" psycopg2-binary \
 && useradd --create-home --uid 10001 mlflow \
 && mkdir -p /mlartifacts && chown mlflow:mlflow /mlartifacts
USER mlflow
WORKDIR /home/mlflow
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", "--serve-artifacts"]
