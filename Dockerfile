# The operator image: a static-enough Rust binary on a distroless, non-root base.
#
#   docker build -t ghcr.io/exactly-dev/exactly:0.1.0 .
#
# The operator speaks Kafka's protocol itself (no librdkafka in the binary) and TLS with rustls,
# so the runtime image needs only glibc and CA certificates.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY operator/Cargo.toml operator/Cargo.toml
COPY tests/Cargo.toml tests/Cargo.toml
RUN mkdir -p operator/src tests/src \
    && echo 'fn main() {}' > operator/src/main.rs && touch operator/src/lib.rs \
    && touch tests/src/lib.rs \
    && cargo build --release --locked -p exactly \
    && rm -rf operator/src tests/src
COPY operator operator
COPY tests tests
RUN touch operator/src/main.rs operator/src/lib.rs \
    && cargo build --release --locked -p exactly \
    && cp target/release/exactly /exactly

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /exactly /exactly
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/exactly"]
CMD ["run", "--log-format", "json", "--leader-elect"]
