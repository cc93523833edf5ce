# `baton-worker` built with the `torch` feature, with the libtorch libraries it loads (from
# PyPI torch==2.13.0, deploy/setup/libtorch.sh) in /usr/local/lib/baton. Runs on CPU as is; for
# GPUs run it with the NVIDIA container runtime (`--gpus all`), which supplies the driver.
# Built by deploy/images/build.sh only when libtorch is set up; BASE=debian:bookworm-slim works too.
ARG BASE=scratch
FROM ${BASE}
COPY rootfs/ /
USER 65534:65534
# Logs without colour codes; `run --log-format json` for JSON lines.
ENV LD_LIBRARY_PATH=/usr/local/lib/baton \
    NO_COLOR=1
ENTRYPOINT ["/baton-worker"]
CMD ["run", "--help"]
