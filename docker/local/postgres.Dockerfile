# A stand-in for the official postgres image, from Debian's package, for machines that reach no image registry
# (docker/make-local-base.sh builds it). It keeps the official image's contract: POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB and PGDATA; password auth over TCP; pg_isready for health checks.
ARG BASE_IMAGE=shiftsweep-local-base:bookworm
FROM ${BASE_IMAGE}
# The official image's uid and gid (999), made before the package would pick its own.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --shell /bin/bash postgres \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
USER 999:999
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
