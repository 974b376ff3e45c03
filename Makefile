# rlock: build, run and test the Redis lock module.
# `make test` and `make run` install what a new Debian machine lacks (you are root there).

PORT ?= 6379
MODULE := target/release/librlock.so
CARGO ?= cargo
IMAGE ?= rlock:test
# The container base made offline from Debian's packages (no image can be pulled here).
IMAGE_BASE ?= rlock-base:trixie
# Debian packages the build and the tests use: the server and its tools (7.0, the host's),
# libclang for bindgen, debootstrap for the other server versions and the image's base.
# valgrind counts the lock pair's server instructions for `make test`'s pair-cost check.
DEBIAN_PACKAGES := redis-server redis-tools libclang-dev debootstrap valgrind

.PHONY: build deps run test unit integration servers pair-cost image top-test container faults faults-short clients python-client rust-client bench mutants clean lint

build: deps
	$(CARGO) build --release -p rlock

deps:
	@scripts/install-deps $(DEBIAN_PACKAGES)

# Foreground, on 127.0.0.1:$(PORT), with the module and ./redis.conf.
run: build
	@if (exec 3<>/dev/tcp/127.0.0.1/$(PORT)) 2>/dev/null; then \
		echo "port $(PORT) is taken (a system redis-server? stop it with 'service redis-server stop', or run 'make run PORT=7000')"; \
		exit 1; \
	fi
	redis-server ./redis.conf --port $(PORT)

# Style checks first (fmt, clippy -D warnings), then unit tests, the plain lock's cost against
# its bound, the integration suite on every server version, rlock-top under tmux, the
# container image, the fault suite's short run, and the client libraries. The pair-cost check
# runs beside the rest (callgrind counts instructions, which another process' load does not
# change); its output is printed, and its failure fails `make test`, once the rest is done.
test: build lint unit servers
	@mkdir -p target
	@( $(MAKE) --no-print-directory pair-cost > target/pair-cost.log 2>&1; echo $$? > target/pair-cost.rc ) & \
	pair_cost=$$!; \
	$(MAKE) --no-print-directory integration top-test container faults-short clients; rest=$$?; \
	wait $$pair_cost; \
	echo "=== pair cost (ran beside the rest)"; cat target/pair-cost.log; \
	test "$$rest" = 0 && test "$$(cat target/pair-cost.rc)" = 0

unit:
	$(CARGO) test --release --lib

servers: deps
	@scripts/prepare-servers

# Server instructions of the plain LOCK.ACQUIRE + LOCK.RELEASE pair against SET NX PX + DEL,
# counted by callgrind in the same run (repeatable counts, no timing): fails when the ratio
# passes the bound bench/pair-cost-bound gives the server. Every server with a line there.
pair-cost: build servers
	@set -e; while read -r name server; do \
		grep -q "^$$name " bench/pair-cost-bound || continue; \
		echo "=== pair cost on $$name ($$($$server --version | cut -d' ' -f1-3))"; \
		python3 bench/pair_cost.py --pairs 2000 --seeds 3 --check bench/pair-cost-bound --name $$name \
			--server $$server $(CURDIR)/$(MODULE); \
	done < target/servers/list

# The whole integration suite once per server version of target/servers/list (with the test
# module that stores keys of another module's type, tests/modules/othertype), under
# cargo-nextest: each test in its own process, two at a time across every test file, so no file
# waits for its slowest test (about 50 s a server instead of 80 with `cargo test`).
integration: build servers
	@$(CARGO) nextest --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-nextest
	$(CARGO) build --release -p rlock-test-othertype
	@set -e; while read -r name server; do \
		echo "=== integration tests on $$name ($$($$server --version | cut -d' ' -f1-3))"; \
		RLOCK_SERVER=$$server RLOCK_MODULE=$(CURDIR)/$(MODULE) \
			$(CARGO) nextest run --release -p rlock --test '*' --no-fail-fast --hide-progress-bar; \
	done < target/servers/list

# `rlock-top` (tools/rlock-top) against a real server under tmux: send-keys, capture-pane
# (tests/observe.rs, rlock_top_...).
top-test: build
	@scripts/install-deps tmux
	$(CARGO) build --release -p rlock-top -p rlock-test-othertype
	RLOCK_TOP=$(CURDIR)/target/release/rlock-top RLOCK_MODULE=$(CURDIR)/$(MODULE) \
		$(CARGO) test --release -p rlock --test observe rlock_top

# The container image on the offline base (Redis 8.0 from Debian trixie).
image: build servers
	@docker image inspect $(IMAGE_BASE) >/dev/null 2>&1 || \
		{ echo "importing $(IMAGE_BASE) from target/roots/trixie"; \
		  tar -C target/roots/trixie -c . | docker import - $(IMAGE_BASE) >/dev/null; }
	docker build -q --build-arg BASE=$(IMAGE_BASE) -t $(IMAGE) . >/dev/null
	@echo "built $(IMAGE) (base $(IMAGE_BASE))"

# Container tests when a Docker engine answers; said plainly when none does.
# An engine on the fuse-overlayfs storage driver needs that package to build and run images.
container:
	@if docker info >/dev/null 2>&1; then \
		if [ "$$(docker info --format '{{.Driver}}')" = fuse-overlayfs ]; then scripts/install-deps fuse-overlayfs; fi && \
		$(MAKE) --no-print-directory image && \
		RLOCK_IMAGE=$(IMAGE) RLOCK_MODULE=$(CURDIR)/$(MODULE) $(CARGO) test --release -p rlock --test container; \
	else \
		echo "SKIPPED: container tests (no Docker engine answers 'docker info')"; \
	fi

# The fault suite (faults/, docs/faults.md): a Sentinel topology and a Redis Cluster in
# containers, clients through the Python client writing to a fenced register, a nemesis on a
# printed seed (partitions, kill -9 and restarts, pauses, clock skew, failovers, slot moves),
# an offline checker and a table. `make faults` is the full run (about 25 min; SEED=n replays
# one), `make faults-short` the short one inside `make test` (fixed seed, under 3 min).
# Both say SKIPPED when no Docker engine answers.
faults faults-short:
	@if docker info >/dev/null 2>&1; then \
		if [ "$$(docker info --format '{{.Driver}}')" = fuse-overlayfs ]; then scripts/install-deps fuse-overlayfs; fi && \
		$(MAKE) --no-print-directory image && \
		RLOCK_IMAGE=$(IMAGE) faults/run $(if $(filter faults-short,$@),--short) $(if $(SEED),--seed $(SEED)); \
	else \
		echo "SKIPPED: fault suite $@ (no Docker engine answers 'docker info')"; \
	fi

# The client libraries against the real module (Redis 7.0): Python (a venv under target/,
# ruff, mypy, pytest) and Rust (the rlock-client crate).
clients: python-client rust-client

python-client: build
	RLOCK_MODULE=$(CURDIR)/$(MODULE) clients/python/run-tests

rust-client: build
	RLOCK_MODULE=$(CURDIR)/$(MODULE) $(CARGO) test --release -p rlock-client

# Tables first (what CI reads), then the pictures: every part also leaves its results as JSON in
# target/bench/, and `rlock-bench charts` draws them as SVGs into bench/charts/ (BENCHMARKS.md
# embeds them; each names the machine, the server and the date).
BENCH_DATA := target/bench
bench: build servers
	$(CARGO) build --release -p rlock-bench-bare
	@mkdir -p $(BENCH_DATA) && rm -f $(BENCH_DATA)/rlock-bench.json $(BENCH_DATA)/python-bench.json $(BENCH_DATA)/pair-cost-*.json
	$(CARGO) run --release -p rlock-bench -- --module $(CURDIR)/$(MODULE) --json $(BENCH_DATA)/rlock-bench.json
	python3 bench/pair_cost.py --json $(BENCH_DATA)/pair-cost-1-redis-7.0.json $(CURDIR)/$(MODULE)
	python3 bench/pair_cost.py --server $$(awk '$$1 == "valkey-9.1" {print $$2}' target/servers/list) \
		--json $(BENCH_DATA)/pair-cost-2-valkey-9.1.json $(CURDIR)/$(MODULE)
	RLOCK_MODULE=$(CURDIR)/$(MODULE) clients/python/run-bench --rounds 3 --sweep 1,2,4,8,16,32 \
		--handoff-rounds 50 --json $(BENCH_DATA)/python-bench.json
	RLOCK_MODULE=$(CURDIR)/$(MODULE) clients/python/run-bench election --json $(BENCH_DATA)/election.json
	$(CARGO) build --release -p rlock-bench-names
	python3 bench/command_tax.py $(CURDIR)/$(MODULE)
	$(CARGO) build --release -p rlock-bench --bin cluster-routing
	python3 bench/cluster.py --json $(BENCH_DATA)/cluster.json $(CURDIR)/$(MODULE)
	$(CARGO) run --release -p rlock-bench -- charts --data $(BENCH_DATA) --out bench/charts

# Mutation testing (cargo-mutants; not part of `make test`): each mutant of src/ is built in its
# own copy of the tree with its own librlock.so and must fail the unit tests, the integration
# suite or the cluster tests on the host's redis-server (7.0), or the integration suite on
# Valkey 9.1, run in that order under cargo-nextest (.cargo/mutants-cargo; set
# RLOCK_MUTANTS_SERVERS to choose other servers). Mutants are built unoptimised and
# incrementally (the release profile's other settings, wrapping arithmetic included, stay):
# about 1 s a build instead of 11.
# By default only code that differs from $(MUTANTS_BASE), committed or not (new untracked files
# are not in the diff); ALL=1 mutates everything (see the README for its duration). Harmless
# survivors, with reasons: .cargo/mutants.toml. Results: target/mutants.out/. Runs the
# cargo-mutants binary itself: `cargo mutants` would reset CARGO and bypass the wrapper.
MUTANTS_BASE ?= main
MUTANTS_JOBS ?= 2
mutants: deps servers
	@command -v cargo-mutants >/dev/null || $(CARGO) install --locked cargo-mutants
	@$(CARGO) nextest --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-nextest
	@mkdir -p target
	@if [ -n "$(ALL)" ]; then scope=; else \
		git diff $(MUTANTS_BASE) -- src > target/mutants.diff; scope="--in-diff target/mutants.diff"; fi; \
	servers="$${RLOCK_MUTANTS_SERVERS:-redis-server $$(awk '$$1 == "valkey-9.1" {print $$2}' target/servers/list)}"; \
	env -u RLOCK_MODULE -u RLOCK_IMAGE -u CARGO_TARGET_DIR -u RLOCK_SERVER RLOCK_MUTANTS_SERVERS="$$servers" \
		CARGO=$(CURDIR)/.cargo/mutants-cargo RLOCK_REAL_CARGO=$(CARGO) RLOCK_MUTANTS_ORIGIN=$(CURDIR) \
		CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_INCREMENTAL=true CARGO_PROFILE_RELEASE_DEBUG=0 \
		CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 \
		cargo-mutants mutants --output target --jobs $(MUTANTS_JOBS) $$scope $(MUTANTS_ARGS)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
