# The lockd image: the static lockd binary and its health probe on an empty
# (scratch) base, run as an unprivileged user. It needs no registry: nothing
# is pulled, the binaries are built on the host first. Build it with
#
#	make docker-image        # static bin/lockd and bin/lockd-health, then docker build -t lockd:dev .
#
# or by hand:
#
#	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/lockd ./cmd/lockd
#	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/lockd-health ./cmd/lockd-health
#	docker build -t lockd:dev .
#
# Configuration: LOCKD_* environment variables (LOCKD_CELL, LOCKD_ID,
# LOCKD_REPLICAS, LOCKD_BOOTSTRAP, ...; see internal/config), and/or a JSON
# file mounted into the container and named with `serve --config FILE`.
# Data lives in the /data volume (LOCKD_DATA_DIR=/data/lockd). In the
# container the replica listens on 0.0.0.0: clients 7001, Paxos 7101, gossip
# 7201 (TCP and UDP); LOCKD_REPLICAS names the addresses others reach it on.
# Those are not loopback addresses, so lockd wants auth and tls in its
# configuration, or LOCKD_AUTH_DISABLED=true to run open on purpose (as the
# development cell of configs/ does on its private networks).
FROM scratch

LABEL org.opencontainers.image.title="lockd" \
      org.opencontainers.image.description="A Chubby-style lock service: one replica of a Multi-Paxos cell" \
      org.opencontainers.image.source="https://github.com/lockd/lockd"

# An unprivileged user (10001) to run as, and the data directory it owns
# (configs/docker/empty/ is an empty directory in the build context: its
# placeholder file is left out by .dockerignore).
COPY configs/docker/passwd /etc/passwd
COPY configs/docker/group /etc/group
COPY --chown=10001:10001 configs/docker/empty/ /data/

COPY bin/lockd-health /usr/local/bin/lockd-health
COPY bin/lockd /usr/local/bin/lockd

ENV LOCKD_DATA_DIR=/data/lockd \
    LOCKD_CLIENT_LISTEN=0.0.0.0:7001 \
    LOCKD_PEER_LISTEN=0.0.0.0:7101 \
    LOCKD_GOSSIP_LISTEN=0.0.0.0:7201 \
    LOCKD_HEALTH_URL=http://127.0.0.1:7001/healthz

USER 10001:10001
VOLUME ["/data"]
EXPOSE 7001/tcp 7101/tcp 7201/tcp 7201/udp

# The probe GETs LOCKD_HEALTH_URL; a replica with tls wants
# LOCKD_HEALTH_URL=https://127.0.0.1:7001/healthz (lockd-health then uses the
# replica's LOCKD_TLS_* files, or LOCKD_HEALTH_CA/CERT/KEY/SERVER_NAME).
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/lockd-health"]

ENTRYPOINT ["/usr/local/bin/lockd"]
CMD ["serve"]
