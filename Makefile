GO ?= go
ADDR ?= 127.0.0.1:8080

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: run run-postgres cluster test fuzz-authz build bench bench-scale bench-peer bench-scim bench-writes bench-realistic scim-conformance load lint fmt fmt-check

## run: start Trellis on $(ADDR) with embedded SpiceDB (memdb) and the demo
run:
	$(GO) run ./cmd/trellis serve --demo --addr $(ADDR)

## test: vet and run every test with the race detector, then the authorization model test and the cache's
## differential tests at full length without it (under race the differential tests run a quarter of their operations)
## (its operations run one at a time, so the race detector adds little to it but minutes)
## (benchmarks/ holds only benchmarks: vet compiles it; linking it with the race detector costs CI a minute for no test)
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m -skip '^TestAuthorizationModel$$' $$($(GO) list ./... | grep -v '/benchmarks$$')
	$(GO) test -count=1 -timeout 20m -run '^TestAuthorizationModel$$' ./api/
	$(GO) test -count=1 -timeout 20m -run '^TestCacheDifferential' ./engine/

## fuzz-authz: the authorization model test, long (TRELLIS_AUTHZ_SEED=… replays a run)
fuzz-authz:
	TRELLIS_AUTHZ_OPS=$${TRELLIS_AUTHZ_OPS:-100000} $(GO) test -count=1 -timeout 0 -v -run '^TestAuthorizationModel$$' ./api/

build:
	$(GO) build -o bin/trellis ./cmd/trellis

## bench-peer: Trellis vs embedded OpenFGA on the same data (benchmarks/peer.sh)
bench-peer:
	benchmarks/peer.sh

## load: ceiling, Trellis (cached, 1 % writes, uncached) and OpenFGA over HTTP, pinned processes, 3 rounds (benchmarks/load.sh)
load:
	REPEAT=3 benchmarks/load.sh

## bench-realistic: issue 19's workload (1,000 tenants, 100,000 users, 60,000 documents, Zipf checks, cold then warm, 0 and 1 % writes): ceiling, Trellis on memdb and PostgreSQL, SpiceDB's own server (HTTP gateway) and OpenFGA on PostgreSQL, each its own process (benchmarks/realistic.sh; ≈ 15 min and more at full size)
TENANTS ?= 1000
USERS ?= 100000
DOCS ?= 60000
PAIRS ?= 100000
ZIPF ?= 1.1
WARMUP ?= 60s
MEASURED ?= 15s
WRITES ?= 0,1
WORKERS ?= 32
ARMS ?= ceiling,trellis-memdb,trellis-postgres,spicedb-postgres,openfga-postgres
bench-realistic:
	benchmarks/realistic.sh -tenants $(TENANTS) -users $(USERS) -docs $(DOCS) -pairs $(PAIRS) -zipf $(ZIPF) \
		-warmup $(WARMUP) -measured $(MEASURED) -writes $(WRITES) -workers $(WORKERS) -arms $(ARMS)

## run-postgres: make run on PostgreSQL (both stores, migrations at start): make run-postgres DATABASE_URL=postgres://…
run-postgres:
	@test -n "$(DATABASE_URL)" || (echo "set DATABASE_URL=postgres://user@host/db (e.g. createdb trellis)"; exit 1)
	$(GO) run ./cmd/trellis serve --demo --migrate --addr $(ADDR) --datastore postgres --store postgres --database-url "$(DATABASE_URL)"

## cluster: PostgreSQL, two SpiceDB servers and two Trellis nodes on loopback, the demo loaded; Ctrl-C stops them (deploy/cluster.sh)
cluster:
	deploy/cluster.sh

## bench: run the benchmarks in benchmarks/ but the large-data ones, 5 times each (minutes; not part of make test)
bench:
	$(GO) test -run '^$$' -bench . -skip 'BenchmarkPostgres' -benchmem -count 5 -timeout 60m ./benchmarks/ | tee benchmarks/last-run.txt

## bench-writes: HTTP membership PUTs, group member adds and org creates by 1, 8 and 32 writers, memory and PostgreSQL, one and two nodes (benchmarks/writes; a few minutes)
bench-writes:
	$(GO) run ./benchmarks/writes -label $$(git rev-parse --short HEAD) | tee benchmarks/last-writes-run.txt

## bench-scale: tenant scaling to 10,000 tenants and 1.1 M relationships, PostgreSQL and memdb, once (about 20 min)
bench-scale:
	$(GO) test -run '^$$' -bench 'BenchmarkPostgres' -benchmem -count 1 -timeout 90m ./benchmarks/ | tee benchmarks/last-scale-run.txt

## bench-scim: SCIM provisioning over HTTP on PostgreSQL, 10,000 users and 500 groups by /Bulk of 100 (TRELLIS_SCIM_USERS/GROUPS/BULK to change; BULK=0: one POST each)
bench-scim:
	$(GO) test -run '^$$' -bench 'BenchmarkSCIMProvisionPostgres' -benchtime 1x -count 1 -timeout 90m ./benchmarks/ | tee benchmarks/last-scim-run.txt

## scim-conformance: the RFC 7644 conformance table (testdata/scim/conformance.json) over HTTP
scim-conformance:
	$(GO) test -count=1 -v -run '^TestSCIMConformance$$' ./api/ | grep -E '^(---|===|ok|FAIL|PASS)|conformance:'

## lint: gofmt, go vet (VET=0 skips it) and staticcheck; run it before each commit (CI runs fmt-check: staticcheck's
## cold analysis of SpiceDB's dependency tree costs CI minutes of its 25)
VET ?= 1
lint: fmt-check
	@if [ "$(VET)" != 0 ]; then echo "$(GO) vet ./..."; $(GO) vet ./...; fi
	$(GO) run $(STATICCHECK) ./...

## fmt-check: fail when a file is not gofmt-formatted
fmt-check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)

fmt:
	gofmt -w $$(git ls-files '*.go')
