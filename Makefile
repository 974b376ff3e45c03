# rlock: build, run and test the Redis lock module.
# `make test` and `make run` install what a fresh Debian machine lacks (you are root there).

PORT ?= 6379
MODULE := target/release/librlock.so
CARGO ?= cargo

.PHONY: build run test unit integration bench clean deps lint

build: deps
	$(CARGO) build --release -p rlock

# Debian's redis-server (stock, no patches) and libclang for bindgen, installed when missing.
deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v redis-benchmark >/dev/null 2>&1 || missing="$$missing redis-tools"; \
	ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || missing="$$missing libclang-dev"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		command -v service >/dev/null 2>&1 && service redis-server stop >/dev/null 2>&1; \
		pkill -x redis-server 2>/dev/null; true; \
	fi

# Foreground, on 127.0.0.1:$(PORT), with the module and ./redis.conf.
run: build
	@if (exec 3<>/dev/tcp/127.0.0.1/$(PORT)) 2>/dev/null; then \
		echo "port $(PORT) is taken (a system redis-server? stop it with 'service redis-server stop', or run 'make run PORT=7000')"; \
		exit 1; \
	fi
	redis-server ./redis.conf --port $(PORT)

# Style checks first (fmt, clippy -D warnings), then the unit and the integration tests.
test: build lint unit integration

unit:
	$(CARGO) test --release --lib

integration:
	RLOCK_MODULE=$(CURDIR)/$(MODULE) $(CARGO) test --release -p rlock --test '*'

bench: build
	$(CARGO) run --release -p rlock-bench -- --module $(CURDIR)/$(MODULE)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
