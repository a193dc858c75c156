# transferd — see README.md. `make run` and `make test` are all a newcomer needs.
GO       ?= go
BIN      ?= bin/transferd
DATA     ?= ./data
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 30s

.PHONY: build run test bench fuzz lint demo clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/transferd

# DEV_FLAGS make serve trust the signing keys of a local `transferd simulate`
# (its key server on 127.0.0.1:8081, its default Forge app ARI). Development
# only: never use them in production, where serve must trust Atlassian's keys.
# The query API token is "dev-token": bin/transferd transfers list --api-token dev-token
DEV_FLAGS ?= --forge-app-ari ari:cloud:ecosystem::app/00000000-0000-4000-8000-000000000000 \
	--forge-jwks-url http://127.0.0.1:8081/forge/jwks.json \
	--install-keys-url http://127.0.0.1:8081/install-keys \
	--api-token dev-token

## run: serve on the embedded default (embedded NATS + bbolt under $(DATA)),
## trusting a local simulator: then `bin/transferd simulate` in another shell
run: build
	$(BIN) serve --data $(DATA) $(DEV_FLAGS)

## demo: serve on the embedded default under $(DEMO_DATA) with --drive (settling
## errored and cancelled transfers, and the others once importers have done their
## uploads; progress; Forge message status; reconciling with the platform), run
## importers (`transferd work run`, a few uploads failing), play
## $(DEMO_TRANSFERS) transfers against it with simulate, which also serves the
## platform's REST side on $(DEMO_PLATFORM), wait until transferd has settled them,
## then keep serving the dashboard and the platform until Ctrl-C
DEMO_DATA      ?= ./data-demo
DEMO_LISTEN    ?= 127.0.0.1:8080
DEMO_TRANSFERS ?= 300
DEMO_PLATFORM  ?= 127.0.0.1:8082
DEMO_DRIVE     ?= --drive --app-key com.example.transferd-simulator --settle-errored --settle-cancelled \
	--drive-interval 2s --reconcile-interval 5s \
	--work --work-retry-base 5s --settle-done --uploads-quiet 20s --progress --forge-ack
DEMO_IMPORT    ?= --importers 4 --fail-rate 0.05 --retry-rate 0.1
demo: build
	@set -eu; \
	$(BIN) serve --data $(DEMO_DATA) --listen $(DEMO_LISTEN) $(DEV_FLAGS) $(DEMO_DRIVE) & pid=$$!; \
	trap 'kill $$pid 2>/dev/null || true; wait $$pid 2>/dev/null || true' EXIT; \
	trap 'exit 130' INT TERM; \
	i=0; until curl -fsS -o /dev/null http://$(DEMO_LISTEN)/healthz 2>/dev/null; do \
	  kill -0 $$pid 2>/dev/null || { echo "serve exited: is $(DEMO_LISTEN) in use?" >&2; exit 1; }; \
	  i=$$((i+1)); [ $$i -lt 300 ] || { echo "serve not healthy after 30 s" >&2; exit 1; }; sleep 0.1; \
	done; \
	echo "open http://$(DEMO_LISTEN)/ and log in with token dev-token; what reconciliation found:"; \
	echo "  curl -H 'Authorization: Bearer dev-token' http://$(DEMO_LISTEN)/v1/reconciliation  (Ctrl-C stops it all)"; \
	$(BIN) work run --server http://$(DEMO_LISTEN) --api-token dev-token $(DEMO_IMPORT) & wpid=$$!; \
	trap 'kill $$wpid $$pid 2>/dev/null || true; wait $$wpid $$pid 2>/dev/null || true' EXIT; \
	$(BIN) simulate --target http://$(DEMO_LISTEN) --transfers $(DEMO_TRANSFERS) --platform-listen $(DEMO_PLATFORM) \
	  --platform-unsent-uploads 2 --platform-unsent-transfers 1 --wait-settled 90s --settle-all --expect-settled \
	  --platform-linger 24h & spid=$$!; \
	trap 'kill $$spid $$wpid $$pid 2>/dev/null || true; wait $$spid $$wpid $$pid 2>/dev/null || true' EXIT; \
	wait $$spid || echo "simulate reported problems (above)" >&2; \
	wait $$pid

## test: vet, then every test with the race detector
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	@# Every benchmark once, on small inputs: that it runs, not how fast
	@# (make bench measures). A benchmark that fails at run time is caught
	@# here rather than at the next make bench.
	@out=$$(mktemp); \
	if ! PROJECTIONS_BENCH_EVENTS=2000 BENCH_MEM_EVENTS=2000 $(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 5m ./... > $$out 2>&1; then \
		cat $$out; rm -f $$out; echo "a benchmark failed (above)"; exit 1; \
	fi; \
	echo "benchmarks: $$(grep -c '^Benchmark' $$out) ran once on small inputs"; rm -f $$out

## bench: every benchmark once, with allocations; then the ingest figures
## on the platform's shape ($(BENCH_EVENTS) events of N/4.4 transfers, 20
## tenants), each as a ratio to its ceiling measured in the same run; then
## the webhook-200-to-GET lag of a whole serve at BENCH_LAG_RATE events/s
## (default 5000) over $(BENCH_LAG_EVENTS) events. BENCH_REBUILD_EVENTS is
## the stream the projection catch-up and rebuild benchmarks fold (default
## the 174,783 events of issue 11's figure). At the end, a summary of
## issue 11's figures (cmd/benchsummary) from the whole output, kept in BENCH_OUT
BENCH_EVENTS ?= 100000
BENCH_LAG_EVENTS ?= 50000
BENCH_REBUILD_EVENTS ?= 175000
BENCH_OUT ?= bin/bench.txt
bench: SHELL := /bin/bash
bench: .SHELLFLAGS := -o pipefail -ec
bench:
	@mkdir -p $(dir $(BENCH_OUT)); : > $(BENCH_OUT)
	PROJECTIONS_BENCH_EVENTS=$(BENCH_REBUILD_EVENTS) $(GO) test -run '^$$' -bench . -skip '^Benchmark(Durability|Lag)$$' -benchmem -count 1 ./... | tee -a $(BENCH_OUT)
	$(GO) test -run '^$$' -bench '^BenchmarkDurability$$' -benchtime $(BENCH_EVENTS)x -count 1 ./ingest/ | tee -a $(BENCH_OUT)
	$(GO) test -run '^$$' -bench '^BenchmarkLag$$' -benchtime $(BENCH_LAG_EVENTS)x -count 1 ./cmd/transferd/ | tee -a $(BENCH_OUT)
	@echo; echo "issue 11's figures, this run (all of it in $(BENCH_OUT)):"
	@$(GO) run ./cmd/benchsummary < $(BENCH_OUT)

## fuzz: each fuzz target for $(FUZZTIME)
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

clean:
	rm -rf bin
