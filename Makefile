# ferry — the two commands: `make run` runs the service, `make test` runs the tests.
SHELL := /bin/bash
GO ?= go
TEST_TIMEOUT ?= 15m

.PHONY: run test build vet bench soak fuzz clean

run:
	@scripts/run.sh

build:
	$(GO) build -buildvcs=auto -o bin/ferry ./cmd/ferry

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# The integration tests run twice, a matrix over the database driver:
# every package on Postgres (started or installed by
# scripts/ensure-postgres.sh), then the packages whose tests use a database
# (dbtest) on the embedded SQLite. They build the versitygw S3 server
# themselves; a missing service fails them.
DB_PACKAGES = $(GO) list -f '{{.ImportPath}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... | \
	awk '/ferry\/db\/dbtest/ && $$1 !~ /\/db\/(dbpg|dbsqlite|dbtest)$$/ {print $$1}'

test: vet
	@$(GO) tool -n versitygw >/dev/null || { echo "make test: cannot build the versitygw S3 server (go tool versitygw)"; exit 1; }
	@scripts/ensure-chromium.sh
	@scripts/ensure-tool.sh ffmpeg ffmpeg "the relay tests (video thumbnails and test videos)"
	@url=$$(scripts/ensure-postgres.sh) && \
	echo "== tests on Postgres" && \
	TEST_DATABASE_URL=$$url FERRY_TEST_DB=postgres $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -p 2 ./... && \
	echo "== tests on SQLite" && \
	TEST_DATABASE_URL=$$url FERRY_TEST_DB=sqlite $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -p 2 $$($(DB_PACKAGES))

# Benchmarks: figures are reported as ratios measured in one run.
bench:
	@url=$$(scripts/ensure-postgres.sh) && \
	for be in postgres sqlite; do echo "== $$be"; \
	TEST_DATABASE_URL=$$url FERRY_TEST_DB=$$be FERRY_BENCH_POSTS=5000 $(GO) test -run '^$$' -bench 'WebhookIngest|IndexEndToEnd|StartupToReady' -benchtime 1x -timeout 60m ./webhook/ ./cmd/ferry/ || exit 1; done && \
	$(GO) test -run '^$$' -bench 'ParseUpdate|Put' ./webhook/ ./r2/ && \
	TEST_DATABASE_URL=$$url $(GO) test -run '^$$' -bench 'BenchmarkIndex(Many)?ElevenBots$$' -benchtime 3000x -timeout 30m ./index/ && \
	TEST_DATABASE_URL=$$url $(GO) test -run '^$$' -bench 'BenchmarkUpload(VsStock|Latency|2000MiB)' -benchtime 3x -timeout 30m ./mtproto/ && \
	TEST_DATABASE_URL=$$url FERRY_BENCH_RELAY=1 $(GO) test -run 'TestRelayVsUploadSpeed' -v -timeout 30m ./cmd/ferry/ && \
	TEST_DATABASE_URL=$$url FERRY_BENCH_RELAY=1 FERRY_BENCH_LATENCY=50ms $(GO) test -run 'TestRelayVsUploadSpeed' -v -timeout 30m ./cmd/ferry/

# Soak: every test five times (shakes out timing-dependent failures), then
# 5,000 channel posts through 11 bots end to end.
soak:
	@url=$$(scripts/ensure-postgres.sh) && \
	TEST_DATABASE_URL=$$url $(GO) test -count=5 -timeout 90m ./... && \
	TEST_DATABASE_URL=$$url FERRY_BENCH_POSTS=5000 $(GO) test -run '^$$' -bench IndexEndToEnd -benchtime 1x -timeout 60m ./cmd/ferry/

# Deploy checks, each really run here and none part of `make test`: the
# Dockerfile built with buildah and run (migrate, web, one update, worker);
# GoReleaser's snapshot build of this machine's target; the Colab notebook
# executed with nbclient against the Bot API stand-in.
.PHONY: image-check release-check notebook-check
image-check:
	@scripts/image-check.sh

release-check:
	@scripts/release-check.sh

notebook-check:
	@scripts/notebook-check.sh

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseUpdate -fuzztime 60s ./webhook/
	$(GO) test -run '^$$' -fuzz FuzzLeanParseAgrees -fuzztime 60s ./webhook/

clean:
	rm -rf bin dist
