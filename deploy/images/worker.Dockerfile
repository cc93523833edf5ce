# `baton-worker` with the emulated backend (sleeps L(b) from a profile): for tests, demos and
# capacity rehearsals without GPUs. Arguments as for `baton-worker run`, e.g.
#   run --nats nats://nats:4222 --id gpu-0 --models resnet50 --profile 'sleep#1082,5204,0,0'
# Built by deploy/images/build.sh; BASE=debian:bookworm-slim works too.
ARG BASE=scratch
FROM ${BASE}
COPY rootfs/ /
USER 65534:65534
# Logs without colour codes; `run --log-format json` for JSON lines.
ENV NO_COLOR=1
ENTRYPOINT ["/baton-worker"]
CMD ["run", "--help"]
