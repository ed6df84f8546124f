# Levee: the only build entry point. See README.md.
#
#   make                 build build/levee
#   make DEBUG=1         -O0, assertions on         (build/debug/levee)
#   make SAN=address,undefined                       (build/san/levee)
#   make check           deps, unit tests, layer and docs checks, integration
#                        suite, then the integration suite on the sanitizer build
#   make run             a throwaway PostgreSQL primary + replica + Redis and Levee
#   make bench           benchmarks against PgBouncer and Pgpool-II (bench/)
#   make bench-cache     result cache against Pgpool-II's query cache (bench/run-cache.sh)
#   make bench-queue     write spike through the write queue (bench/run-queue.sh)

PKG_CONFIG ?= pkg-config
PKGS := libevent libevent_openssl libevent_pthreads openssl hiredis inih libcjson
LIBPG_QUERY_CFLAGS ?=
LIBPG_QUERY_LIBS ?= -lpg_query
PYTHON ?= /usr/bin/python3

ifneq ($(SAN),)
BUILD ?= build/san
SAN_FLAGS := -fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT := -O1 -g -DLV_DEBUG
else ifneq ($(DEBUG),)
BUILD ?= build/debug
OPT := -O0 -g -DLV_DEBUG
else
BUILD ?= build
OPT := -O2 -g
endif

include mk/warnings.mk

PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

CFLAGS ?=
CPPFLAGS += -Isrc -D_GNU_SOURCE
ALL_CFLAGS = -std=gnu11 $(OPT) $(WARNINGS) $(SAN_FLAGS) $(PKG_CFLAGS) $(LIBPG_QUERY_CFLAGS) $(CFLAGS)
LDLIBS = $(PKG_LIBS) $(LIBPG_QUERY_LIBS) -lpthread -lm
ALL_LDFLAGS = $(SAN_FLAGS) $(LDFLAGS)

SRCS := $(shell find src -name '*.c' | sort)
OBJS := $(SRCS:%.c=$(BUILD)/%.o)
CORE_OBJS := $(filter-out $(BUILD)/src/core/time.o,$(filter $(BUILD)/src/core/%,$(OBJS)))

UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:%.c=$(BUILD)/%)

.SECONDARY:

.PHONY: all deps check check-unit check-layers check-config-docs check-integration \
	check-san valgrind-unit run bench bench-cache bench-queue clean fmt

all: $(BUILD)/levee

$(BUILD)/levee: $(OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

# A unit test links core/ (less the clock), its own module and what its first
# line "levee-test-deps:" names (other sources, or tests/unit/fakes/*.c), so a
# test cannot quietly depend on the whole program.
$(BUILD)/tests/unit/%.deps: tests/unit/%.c
	@mkdir -p $(dir $@)
	@mod=$$(echo $* | sed -E 's/^test_([a-z]+)_(.*)$$/src\/\1\/\2.c/'); \
	 extra=$$(sed -n 's/.*levee-test-deps:\(.*\)\*\/.*/\1/p' $< | head -1); \
	 objs=""; for s in $$mod $$extra; do o="$(BUILD)/$${s%.c}.o"; \
	   case " $(CORE_OBJS) $$objs " in *" $$o "*) continue;; esac; \
	   [ -f $$s ] && objs="$$objs $$o"; done; \
	 echo "$(BUILD)/tests/unit/$*: $$objs" > $@; \
	 echo "$(BUILD)/tests/unit/$*_OBJS := $$objs" >> $@

ifneq ($(filter check check-unit valgrind-unit $(BUILD)/tests/unit/%,$(MAKECMDGOALS)),)
-include $(UNIT_SRCS:%.c=$(BUILD)/%.deps)
endif

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(CORE_OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(CORE_OBJS) $($(BUILD)/tests/unit/$*_OBJS) $(LDLIBS) -lcmocka

deps:
	@tools/install-deps.sh

check-unit: $(UNIT_BINS)
	@tools/run-unit.sh $(UNIT_BINS)

valgrind-unit: $(UNIT_BINS)
	@VALGRIND=1 tools/run-unit.sh $(UNIT_BINS)

check-layers:
	@tools/check-layers.sh

check-config-docs:
	@tools/check-config-docs.sh

check-integration: all
	LEVEE_BIN=$(abspath $(BUILD)/levee) $(PYTHON) -m pytest -q tests/integration $(PYTEST_ARGS)

check-san:
	$(MAKE) SAN=address,undefined all
	LEVEE_BIN=$(abspath build/san/levee) LEVEE_SAN=1 $(PYTHON) -m pytest -q tests/integration $(PYTEST_ARGS)

check: deps
	$(MAKE) all
	$(MAKE) check-unit
	$(MAKE) valgrind-unit
	$(MAKE) check-layers
	$(MAKE) check-config-docs
	$(MAKE) check-integration
	$(MAKE) check-san

run: deps all
	@tools/run-stack.sh $(abspath $(BUILD)/levee)

bench: deps all
	@bench/run.sh $(abspath $(BUILD)/levee)

bench-cache: deps all
	@bench/run-cache.sh $(abspath $(BUILD)/levee)

bench-queue: deps all
	@bench/run-queue.sh $(abspath $(BUILD)/levee)

fmt:
	@tools/format.sh fix

clean:
	rm -rf build

-include $(OBJS:.o=.d)
-include $(UNIT_SRCS:%.c=$(BUILD)/%.d) $(wildcard $(BUILD)/tests/unit/fakes/*.d $(BUILD)/tests/unit/helpers/*.d)
