# Vroeg, built from source. Used by docker-compose.yml and the Helm chart
# (deploy/helm/vroeg).
#
# Three build stages: `planner` reduces the workspace to a recipe of its
# manifests, `build` compiles the dependencies from that recipe alone (a
# layer that stays cached until Cargo.toml or Cargo.lock change), then the
# sources. The runtime image holds the binary and default config and rules;
# mount your own over /etc/vroeg/config and /etc/vroeg/rules to edit them and
# reload with SIGHUP (`docker compose kill -s HUP vroeg-1`).
FROM rust:1-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.73
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
# librdkafka is built with OpenSSL (SASL/SCRAM, TLS).
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin vroeg
COPY . .
RUN cargo build --release --locked --bin vroeg

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home /var/lib/vroeg --create-home vroeg
COPY --from=build /src/target/release/vroeg /usr/local/bin/vroeg
# Defaults; a mounted directory replaces each.
COPY rules /etc/vroeg/rules
COPY config /etc/vroeg/config
# Numeric, so that Kubernetes can check runAsNonRoot.
USER 10001:10001
WORKDIR /var/lib/vroeg
ENV VROEG_ENGINE_STATE_DIR=/var/lib/vroeg/state \
    VROEG_ENGINE_RULES=/etc/vroeg/rules \
    VROEG_ENGINE_ROUTING=/etc/vroeg/config/wijkteams.yaml \
    VROEG_API_LISTEN=0.0.0.0:8080
EXPOSE 8080
# Liveness only: /readyz is for load balancers and Kubernetes readiness.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["vroeg"]
CMD ["run", "--config", "/etc/vroeg/config/vroeg.toml"]
