# syntax=docker/dockerfile:1.7
# The haltgate image: one image runs the operator (`haltgate operator`), the iptables init
# step (`haltgate iptables apply`, as root with NET_ADMIN/NET_RAW only) and the sidecar
# (`haltgate sidecar`, UID/GID 17337). Build: `docker build -t haltgate:dev .`
# (e2e/run.sh builds it and loads it into kind).
#
# Pin the bases by digest in your registry mirror for reproducible builds; the tags here
# are the versions haltgate is tested with.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
ARG OPA_IMAGE=openpolicyagent/opa:1.22.2-static

# --- OPA: the static Go binary, for `haltgate policy test` and local Rego checks in the
# image. Pods get OPA as its own container (the chart's opa.image), not from here.
FROM ${OPA_IMAGE} AS opa

# --- build the wheel and every dependency wheel (no compilers in the final image)
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY governance/ governance/
COPY operator/ operator/
COPY sidecar/ sidecar/
COPY cli/ cli/
COPY testbed/ testbed/
COPY crds/ crds/
COPY charts/haltgate/files/injection-template.yaml charts/haltgate/files/
RUN pip wheel --wheel-dir /wheels .

# --- runtime
FROM ${PYTHON_IMAGE}
ARG HALTGATE_UID=17337
LABEL org.opencontainers.image.title="haltgate" \
      org.opencontainers.image.description="Governance sidecar and operator for AI agents on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/haltgate/haltgate"
# iptables (nft and legacy flavours; `haltgate iptables apply --backend auto` picks the
# one the node uses) for the init step; ca-certificates for upstream TLS; nothing else.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels haltgate \
 && rm -rf /wheels \
 && python -m compileall -q /usr/local/lib/python3*/site-packages/haltgate
COPY --from=opa /opa /usr/local/bin/opa
# The sidecar's UID/GID: the iptables rules exempt exactly this UID, and the webhook refuses
# agent containers running as it. The injection template sets runAsUser explicitly too.
RUN groupadd --system --gid ${HALTGATE_UID} haltgate \
 && useradd --system --uid ${HALTGATE_UID} --gid ${HALTGATE_UID} --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin haltgate
# Pods run with a read-only root filesystem: writable paths are emptyDir mounts
# (/tmp, the sidecar's state dir, the operator's work dir).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER ${HALTGATE_UID}:${HALTGATE_UID}
ENTRYPOINT []
CMD ["haltgate", "--help"]
