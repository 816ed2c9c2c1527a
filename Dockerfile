# Vroeg, built from source. Used by docker-compose.yml.
FROM rust:1-bookworm AS build
WORKDIR /src
# librdkafka is built with OpenSSL (SASL/SCRAM, TLS).
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bin vroeg

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/vroeg --create-home vroeg
COPY --from=build /src/target/release/vroeg /usr/local/bin/vroeg
COPY rules /etc/vroeg/rules
COPY config/vroeg.toml /etc/vroeg/vroeg.toml
USER vroeg
WORKDIR /var/lib/vroeg
ENV VROEG_ENGINE_STATE_DIR=/var/lib/vroeg/state \
    VROEG_ENGINE_RULES=/etc/vroeg/rules \
    VROEG_API_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["vroeg"]
CMD ["run", "--config", "/etc/vroeg/vroeg.toml"]
