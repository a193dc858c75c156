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

## test: vet, then every test with the race detector
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

## bench: every benchmark once, with allocations
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

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
