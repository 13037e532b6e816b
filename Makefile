# dialbridge — see README.md. `make demo` and `make test` are the two commands
# that must work on a fresh machine.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/dialbridge
PKGS     := ./...

.PHONY: all build test race vet lint fuzz bench bench-go bench-load demo integration image image-check install clean help

BENCH_FLAGS ?=

all: build

help:
	@echo "make build        build $(BIN)"
	@echo "make test         vet + all tests with the race detector"
	@echo "make demo         run everything on an embedded Redis and AMI simulator"
	@echo "make bench        Go benchmarks of the hot paths, then the load benchmarks"
	@echo "make bench-load   dialbridge bench on a scratch redis-server (writes docs/PERFORMANCE.md)"
	@echo "make fuzz         fuzz the dial command parser for 30s"
	@echo "make integration  tests against a real redis-server (installs it if missing)"
	@echo "make image        OCI image FROM scratch with buildah (installs it if missing)"
	@echo "make image-check  build the image, then check it by inspection (it is never run)"

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/dialbridge

vet:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

lint: vet

# The race detector is on for every test run: a data race is a bug.
test: vet
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

race: test

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseCommand -fuzztime 30s ./bridge

bench: bench-go bench-load

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s $(PKGS)

# Load benchmarks on a scratch redis-server (issue 6): baseline vs end to
# end, paced latency, calls in flight, ACD; writes docs/PERFORMANCE.md.
bench-load:
	./scripts/bench.sh $(BENCH_FLAGS)

demo: build
	./$(BIN) demo

integration:
	./scripts/integration.sh

# Container image (issue 16): FROM scratch, static binary, user 65532,
# settings mounted at /etc/dialbridge; see scripts/image.sh and README.md.
IMAGE     ?= dialbridge
HTTP_PORT ?=

image:
	VERSION='$(VERSION)' IMAGE='$(IMAGE)' HTTP_PORT='$(HTTP_PORT)' ./scripts/image.sh

# By inspection only: these machines cannot run containers.
image-check: image
	VERSION='$(VERSION)' IMAGE='$(IMAGE)' HTTP_PORT='$(HTTP_PORT)' ./scripts/image-check.sh

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)/usr/local/bin/dialbridge
	[ -e $(DESTDIR)/etc/dialbridge/settings.yaml ] || install -D -m 0640 configs/settings.yaml $(DESTDIR)/etc/dialbridge/settings.yaml
	install -D -m 0644 scripts/dialbridge@.service $(DESTDIR)/etc/systemd/system/dialbridge@.service
	install -D -m 0644 scripts/logrotate.dialbridge $(DESTDIR)/etc/logrotate.d/dialbridge
	install -d -m 0750 $(DESTDIR)/var/log/dialbridge
	install -d $(DESTDIR)/usr/local/share/doc/dialbridge && install -m 0644 README.md docs/*.md $(DESTDIR)/usr/local/share/doc/dialbridge/
	@id dialbridge >/dev/null 2>&1 || echo "create the service user: useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin dialbridge"
	@echo "then: chown root:dialbridge /etc/dialbridge/settings.yaml; chown dialbridge:dialbridge /var/log/dialbridge; systemctl daemon-reload; systemctl enable --now dialbridge@<cell>"

clean:
	rm -rf bin
