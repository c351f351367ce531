# The operator image: the operator and the Pipeline worker on a distroless, non-root base.
#
#   docker build -t ghcr.io/exactly-dev/exactly:0.1.0 .
#
# The operator speaks Kafka's protocol itself (no librdkafka in the binary) and TLS with rustls.
# The worker (`exactly-worker`, run by Pipelines' StatefulSets from this same image) links
# librdkafka statically and the base's libssl3. Without Docker, `make image` writes the same
# layout as an OCI archive (tools/image/build.py, on Debian packages; see the README).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY operator/Cargo.toml operator/Cargo.toml
COPY tests/Cargo.toml tests/Cargo.toml
COPY worker/Cargo.toml worker/Cargo.toml
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake >/dev/null
RUN mkdir -p operator/src tests/src worker/src \
    && echo 'fn main() {}' > operator/src/main.rs && touch operator/src/lib.rs \
    && echo 'fn main() {}' > worker/src/main.rs && touch worker/src/lib.rs \
    && touch tests/src/lib.rs \
    && cargo build --release --locked -p exactly -p exactly-worker \
    && rm -rf operator/src tests/src worker/src
COPY operator operator
COPY worker worker
COPY tests tests
RUN touch operator/src/main.rs operator/src/lib.rs worker/src/main.rs worker/src/lib.rs \
    && cargo build --release --locked -p exactly -p exactly-worker \
    && cp target/release/exactly /exactly && cp target/release/exactly-worker /exactly-worker

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /exactly /exactly
COPY --from=build /exactly-worker /usr/local/bin/exactly-worker
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/exactly"]
CMD ["run", "--log-format", "json", "--leader-elect"]
