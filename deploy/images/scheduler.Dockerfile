# The `baton` binary: `baton scheduler` by default; the same image runs `loadgen`, `status`,
# `plan`, `sim`, `config`… (`docker run --rm baton/scheduler:local status --nats nats://nats:4222`).
# Built by deploy/images/build.sh, which stages rootfs/ (the binary and the shared libraries ldd
# lists for it); BASE=debian:bookworm-slim works too. Settings come from BATON_SECTION__KEY.
ARG BASE=scratch
FROM ${BASE}
COPY rootfs/ /
USER 65534:65534
# Logs go to stderr without colour codes (NO_COLOR); BATON_LOG__JSON=true for JSON lines.
ENV BATON_NATS__URL=nats://nats:4222 \
    BATON_METRICS__LISTEN=0.0.0.0:9090 \
    NO_COLOR=1
# Prometheus text on /metrics
EXPOSE 9090
ENTRYPOINT ["/baton"]
CMD ["scheduler"]
