# Thumbnailed. `make run` starts the service on :8080 with an embedded Redis;
# `make test` runs every test. The libvips engine is used whenever libvips is
# installed (pkg-config finds it); otherwise the pure-Go engine.

GO       ?= go
TAGS     ?= $(shell pkg-config --exists vips 2>/dev/null && echo vips)
BIN      := bin/thumbnailed
# Packages that run goroutines of their own: tested with the race detector too.
RACE_PKGS := ./jobs/... ./worker/... ./notifier/... ./server/... ./safehttp/... ./webui/... ./blob/... ./connlimit/... ./keys/... ./cmd/...
# `thumbnailed version` names the build.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME ?= 10s
# Extra flags for go test, e.g. TESTFLAGS=-v to list every test that ran.
TESTFLAGS ?=

.PHONY: run build test test-race test-go test-vips bench fuzz lint docker load

run:
	$(GO) run -tags '$(TAGS)' -ldflags '$(LDFLAGS)' ./cmd/thumbnailed

build:
	CGO_ENABLED=$(if $(TAGS),1,0) $(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/thumbnailed
	@echo "built $(BIN) with the $(if $(TAGS),libvips,pure-Go) engine"

test:
	$(GO) test -count=1 $(TESTFLAGS) -tags '$(TAGS)' ./...
	$(GO) test -count=1 $(TESTFLAGS) -race -tags '$(TAGS)' $(RACE_PKGS)

# The whole suite under one engine or the other, whatever is installed.
test-go:
	$(GO) test -count=1 ./...

test-vips:
	$(GO) test -count=1 -tags vips ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 5x -tags '$(TAGS)' ./thumbnail/

# Load-test a RUNNING service with cmd/thumbload (it starts only its callback
# receiver). Start the service with THUMBNAILED_ALLOW_PRIVATE_NETWORKS=true
# (callbacks go to 127.0.0.1) and THUMBNAILED_RATE_LIMIT/BURST high enough for
# the load. E.g. make load LOAD_ARGS='-n 100 -c 8 -pid 1234', or idle pickup:
# make load LOAD_IMAGES=thumbnail/testdata/photos/go-video-001.jpeg LOAD_ARGS='-idle 10s -repeat 5'
LOAD_ADDR   ?= http://127.0.0.1:8080
LOAD_KEY    ?=
LOAD_IMAGES ?= thumbnail/testdata/photos/IMG_9424.JPG,thumbnail/testdata/photos/Dragonfly_by_Bolly.jpg
LOAD_ARGS   ?= -n 40 -c 4

load:
	$(GO) run ./cmd/thumbload -addr '$(LOAD_ADDR)' -key '$(LOAD_KEY)' -secret '$(THUMBNAILED_WEBHOOK_SECRET)' -images '$(LOAD_IMAGES)' $(LOAD_ARGS)

fuzz:
	./.ci/fuzz $(FUZZTIME)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) vet -tags vips ./...

docker:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t thumbnailed .
