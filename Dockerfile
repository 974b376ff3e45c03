# rlock in a container: a stock redis-server with librlock.so and docker/redis.conf.
#
#   make image                       builds the module, then this file on an offline base (see below)
#   docker build -t rlock .          the same on the official image; needs target/release/librlock.so
#                                    (cargo build --release -p rlock) built on a glibc system
#   docker run -d -p 127.0.0.1:6379:6379 -v rlock-data:/data -e RLOCK_PASSWORD=secret rlock
#
# BASE is any glibc image with redis-server or valkey-server on PATH and the user RUN_AS: the official redis 7.x/8.x images (not the Alpine ones: musl), valkey/valkey, or
# `make image`'s base, a Debian trixie root made with debootstrap (Redis 8.0 and Valkey 8.1),
# since this project's machines can pull no images.
ARG BASE=redis:8.0
FROM ${BASE}
# The server runs as this user, never as root (valkey/valkey images: --build-arg RUN_AS=valkey).
ARG RUN_AS=redis

COPY target/release/librlock.so /usr/local/lib/rlock/librlock.so
COPY docker/redis.conf /etc/rlock/redis.conf
COPY docker/rlock-server /usr/local/bin/rlock-server

# /data holds the AOF and RDB files: mount a volume there to keep locks across restarts.
RUN chmod 755 /usr/local/bin/rlock-server && mkdir -p /data && chown "$RUN_AS:$RUN_AS" /data
USER ${RUN_AS}

VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/rlock-server"]
CMD []
