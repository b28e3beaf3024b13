# lockd: the two commands a newcomer needs are `make cell` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
GO ?= go
STATICCHECK_VERSION := v0.8.2

.PHONY: test lint cell build

build:
	CGO_ENABLED=0 $(GO) build -o bin/lockd ./cmd/lockd

# test: everything CI runs. Lint, the race-enabled suite, then the full
# 2,000-seed Paxos simulation (which prints its summary line), then a short
# run of every fuzz target of the network- and disk-facing decoders.
test: lint
	$(GO) test -race -short -count=1 ./...
	$(GO) test -count=1 -run 'TestSimulation$$' -v ./paxos/ | grep -E '^(simulation:|--- |ok|FAIL|panic)|seed [0-9]+:|replay:'
	FUZZTIME=5s ./scripts/fuzz-smoke.sh

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# cell: a five-replica cell on 127.0.0.1 with its dashboard.
cell: build
	./bin/lockd cell

# docker-image: the lockd image (FROM scratch: builds with no registry
# access) from static, stripped binaries built here first.
DOCKER_IMAGE ?= lockd:dev
.PHONY: docker-image docker-cell docker-drill
docker-image:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/lockd ./cmd/lockd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/lockd-health ./cmd/lockd-health
	docker build -t $(DOCKER_IMAGE) .

# docker-cell: a five-container cell of that image (configs/cell-docker.sh
# up; `configs/cell-docker.sh down -v` removes it). Dashboard on
# http://127.0.0.1:17001/ui/.
docker-cell: docker-image
	LOCKD_DOCKER_IMAGE=$(DOCKER_IMAGE) configs/cell-docker.sh up

# docker-drill: the partition/kill/wipe failure drill across containers
# (also part of `make test` when a Docker engine answers).
docker-drill:
	scripts/docker-drill.sh
