# cdc images, Debian bookworm, multi-stage:
#   runtime (default): cdc-capture, cdc-apply, cdc-verify, cdc-devbroker as user "cdc"
#   tests:             the build tree and PostgreSQL, to run the test suites
#                      against the docker-compose stack (see README)
# Build: docker build -t cdc .   or through docker-compose.yml.

FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config librdkafka-dev libpq-dev libjansson-dev \
      libavro-dev libcriterion-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY include include
COPY common common
COPY schemas schemas
COPY capture capture
COPY apply apply
COPY verify verify
COPY devbroker devbroker
COPY tests tests
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build /build -j"$(nproc)"

FROM build AS tests
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postgresql postgresql-contrib procps \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 cdc \
 && chown -R cdc: /build
COPY README.md /src/README.md
USER cdc
WORKDIR /build
# CDC_TEST_BROKERS and CDC_TEST_PG come from docker-compose.yml.
CMD ["ctest", "--output-on-failure", "-L", "integration"]

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librdkafka1 libpq5 libjansson4 libavro23 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin cdc
COPY --from=build /build/bin/cdc-capture /build/bin/cdc-apply /build/bin/cdc-verify \
     /build/bin/cdc-devbroker /usr/local/bin/
USER cdc
CMD ["cdc-capture", "--help"]
