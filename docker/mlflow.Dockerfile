# The MLflow tracking server of docker-compose.yml: PostgreSQL backend store, served artifacts.
# The MLflow version matches the one autolab is tested with (the client and server share a schema).
# mlflow[auth] adds Flask-WTF for the optional login (docker-compose.auth.yml, --app-name
# basic-auth); its settings file is docker/mlflow-auth.ini, its user store the /mlauth volume.
FROM python:3.11-slim-bookworm
ARG MLFLOW_VERSION=3.17.2
RUN pip install --no-cache-dir "mlflow[auth]==${MLFLOW_VERSION}" psycopg2-binary \
 && useradd --create-home --uid 10001 mlflow \
 && mkdir -p /mlartifacts /mlauth /etc/mlflow && chown mlflow:mlflow /mlartifacts /mlauth
COPY docker/mlflow-auth.ini /etc/mlflow/basic_auth.ini
USER mlflow
WORKDIR /home/mlflow
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", "--serve-artifacts"]
