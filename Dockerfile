# Belfry in a container: built from source with the `dist` profile in a Rust
# image, run in a slim Debian image as an unprivileged user, with the data
# directory as a volume. See docs/deployment.md ("Container").
#
# Not built by CI: the machines that run the tests reach no container
# registry, so no base image can be fetched there. The Debian package, built
# from the same profile with the same settings, is what CI installs and tests
# (scripts/package-test).
#
#   docker build --build-arg BELFRY_GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t belfry .
#   docker run -d --name belfry -p 8080:8080 -v belfry-data:/var/lib/belfry belfry
#   docker exec belfry cat /var/lib/belfry/admin-key

FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
# .git is not copied (.dockerignore): the commit comes from the build argument.
ARG BELFRY_GIT_COMMIT=unknown
ENV BELFRY_GIT_COMMIT=${BELFRY_GIT_COMMIT}
RUN cargo build --locked --profile dist -p belfry

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 belfry \
    && useradd --system --uid 10001 --gid belfry --home-dir /var/lib/belfry --no-create-home belfry \
    && install -d -o belfry -g belfry -m 0700 /var/lib/belfry
COPY --from=build /src/target/dist/belfry /usr/local/bin/belfry
USER belfry:belfry
WORKDIR /var/lib/belfry
# Every setting is a BELFRY_* variable (`belfry serve --help`); override with -e.
ENV BELFRY_DATA_DIR=/var/lib/belfry \
    BELFRY_LISTEN=0.0.0.0:8080 \
    BELFRY_LOG_FORMAT=json \
    BELFRY_ADMIN_KEY_FILE=/var/lib/belfry/admin-key
VOLUME ["/var/lib/belfry"]
EXPOSE 8080
# /healthz: the process answers. (A load balancer should use /readyz.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz >/dev/null || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/belfry"]
CMD ["serve"]
