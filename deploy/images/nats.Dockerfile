# nats-server 2.x, static (deploy/setup/nats-server.sh): `FROM scratch` plus the binary.
# Built by deploy/images/build.sh, which stages rootfs/; BASE=debian:bookworm-slim works too.
ARG BASE=scratch
FROM ${BASE}
COPY rootfs/ /
USER 65534:65534
# clients, monitoring (HTTP), cluster routes
EXPOSE 4222 8222 6222
ENTRYPOINT ["/nats-server"]
CMD ["--http_port", "8222"]
