// moec-capi-check: drives libMoEC's C API from C, the way a C program (or ctypes) calls it, and
// checks that every kind of bad input comes back as an error message and never as a crash.
//
//   moec-capi-check [--sequence] GRAPH.moe MODEL_DIR X.f32 TOKENS HIDDEN Y.f32 PARAM...
//
// With --sequence the graph is a decoder layer's, run as a sequence (moec_sequence_*): a prompt
// of 3 tokens, then a token at a time.
// X.f32 holds TOKENS × HIDDEN raw little-endian floats; the program writes the plan's output for
// them to Y.f32 (the Swift test compares it with transformers' reference). It prints one line per
// check and exits 0 when every check held, 1 otherwise.
#include "moec.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures = 0;

static void check(int ok, const char *what, const char *detail) {
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail ? ": " : "", detail ? detail : "");
    if (!ok) failures++;
}

// Expects a call to have failed with a message containing `needle`; frees the message.
static void expect_error(char *error, const char *what, const char *needle) {
    int ok = error != NULL && strstr(error, needle) != NULL;
    check(ok, what, error ? error : "(no error message)");
    moec_string_free(error);
}

static float *read_floats(const char *path, size_t count) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *data = malloc(count * sizeof(float));
    size_t got = fread(data, sizeof(float), count, f);
    fclose(f);
    if (got != count) { free(data); return NULL; }
    return data;
}

struct concurrent_run {
    moec_plan plan;
    const float *x;
    int64_t tokens, hidden;
    const float *expected;
    int runs, mismatches, errors;
};

static void *run_repeatedly(void *arg) {
    struct concurrent_run *r = arg;
    int64_t shape[2] = {r->tokens, r->hidden};
    float *y = malloc((size_t)(r->tokens * r->hidden) * sizeof(float));
    for (int i = 0; i < r->runs; i++) {
        moec_tensor in = {(void *)r->x, shape, 2, MOEC_F32}, out = {y, shape, 2, MOEC_F32};
        char *error = NULL;
        if (!moec_run(r->plan, &in, 1, &out, 1, &error)) { r->errors++; moec_string_free(error); continue; }
        if (memcmp(y, r->expected, (size_t)(r->tokens * r->hidden) * sizeof(float)) != 0) r->mismatches++;
    }
    free(y);
    return NULL;
}

// Runs rows [from, to) of x through `sequence` into the same rows of y. Returns 1 or 0.
static int run_rows(moec_sequence sequence, const float *x, float *y, int64_t from, int64_t to, int64_t hidden, char **error) {
    int64_t shape[2] = {to - from, hidden};
    moec_tensor in = {(void *)(x + from * hidden), shape, 2, MOEC_F32}, out = {y + from * hidden, shape, 2, MOEC_F32};
    return moec_sequence_run(sequence, &in, 1, &out, 1, error);
}

struct decoding {
    moec_sequence sequence;
    const float *x;
    float *y;
    int64_t tokens, hidden;
    int errors;
};

// Decodes the whole sequence a token at a time.
static void *decode(void *arg) {
    struct decoding *d = arg;
    for (int64_t t = 0; t < d->tokens; t++) {
        char *error = NULL;
        if (!run_rows(d->sequence, d->x, d->y, t, t + 1, d->hidden, &error)) { d->errors++; moec_string_free(error); }
    }
    return NULL;
}

// --sequence: a decoder layer's graph run as a sequence (moec_sequence_*): a prompt of 3 tokens,
// then one token at a time, written to Y.f32; and every misuse of a sequence an error.
static int check_sequences(const char *graph, const char *model, const float *x, int64_t tokens, int64_t hidden,
                           const char *y_path, const char *const *params, size_t param_count) {
    char *error = NULL;
    size_t count = (size_t)(tokens * hidden);
    moec_options options = {sizeof(moec_options), 2, 0, NULL};
    moec_plan plan = moec_compile(graph, model, params, param_count, &options, &error);
    check(plan != 0, "compile the decoder layer", error);
    if (!plan) return 1;
    check(moec_is_sequence(plan, NULL) == 1, "a decoder layer's tokens are a sequence", NULL);

    moec_sequence_new(plan, 0, &error);
    expect_error(error, "a capacity of 0 is refused", "at least 1");
    moec_sequence_new(plan, (int64_t)1 << 62, &error);
    expect_error(error, "a capacity beyond the machine's memory is refused", "tokens");
    moec_sequence_new(424242, 8, &error);
    expect_error(error, "a sequence of a made-up plan is refused", "not a plan this library made");

    moec_sequence sequence = moec_sequence_new(plan, tokens, &error);
    check(sequence != 0 && error == NULL, "moec_sequence_new", error);
    check(moec_sequence_length(sequence, &error) == 0, "a new sequence holds no tokens", error);
    float *y = calloc(count, sizeof(float));
    int ok = run_rows(sequence, x, y, 0, 3, hidden, &error);
    check(ok, "a prompt of 3 tokens", error);
    for (int64_t t = 3; ok && t < tokens; t++) {
        ok = run_rows(sequence, x, y, t, t + 1, hidden, &error);
        if (!ok) check(0, "decode a token", error);
    }
    check(ok && moec_sequence_length(sequence, NULL) == tokens, "then one token at a time: the sequence holds them all", NULL);
    FILE *f = fopen(y_path, "wb");
    if (!f || fwrite(y, sizeof(float), count, f) != count) { fprintf(stderr, "cannot write %s\n", y_path); return 2; }
    fclose(f);

    // Grown while decoding: a sequence made for 3 tokens, reserved up to the whole prompt after
    // its prompt, decodes the same rows bit for bit.
    moec_sequence grown = moec_sequence_new(plan, 3, &error);
    float *y3 = calloc(count, sizeof(float));
    int same = grown != 0 && run_rows(grown, x, y3, 0, 3, hidden, &error) && moec_sequence_reserve(grown, tokens, &error);
    for (int64_t t = 3; same && t < tokens; t++) same = run_rows(grown, x, y3, t, t + 1, hidden, &error);
    check(same && memcmp(y, y3, count * sizeof(float)) == 0, "a sequence grown after its prompt decodes the same rows", error);
    moec_sequence_free(grown, NULL);
    free(y3);

    // Full: refused, and the sequence keeps its tokens.
    float *y2 = calloc(count, sizeof(float));
    check(!run_rows(sequence, x, y2, 0, 1, hidden, &error), "a run into a full sequence fails", NULL);
    expect_error(error, "... and says how full it is", "does not fit");
    check(moec_sequence_length(sequence, NULL) == tokens, "... and the sequence is unchanged", NULL);
    // Wrong shapes are the plan's errors here too.
    int64_t wrong[2] = {1, hidden + 1};
    moec_tensor in = {(void *)x, wrong, 2, MOEC_F32}, out = {y2, wrong, 2, MOEC_F32};
    check(!moec_sequence_run(sequence, &in, 1, &out, 1, &error), "a run with a wrong width fails", NULL);
    moec_string_free(error);
    check(!moec_sequence_run(sequence, NULL, 1, &out, 1, &error), "NULL inputs fail", NULL);
    expect_error(error, "... and say so", "inputs is NULL");

    // Reserve: more room keeps the tokens held; less changes nothing; 0 and the impossible are refused.
    check(moec_sequence_capacity(sequence, &error) == tokens, "the capacity is what the sequence was made with", error);
    moec_sequence_reserve(sequence, 0, &error);
    expect_error(error, "reserving 0 tokens is refused", "at least 1");
    moec_sequence_reserve(sequence, (int64_t)1 << 62, &error);
    expect_error(error, "reserving beyond the machine's memory is refused", "tokens");
    check(moec_sequence_reserve(sequence, 2, &error) == 1 && moec_sequence_capacity(sequence, NULL) == tokens,
          "reserving less than the capacity changes nothing", error);
    check(moec_sequence_reserve(sequence, tokens + 8, &error) == 1 && moec_sequence_capacity(sequence, NULL) == tokens + 8 &&
              moec_sequence_length(sequence, NULL) == tokens,
          "reserve more room: the tokens are kept", error);

    // Rewind: out of range refused; to the last token, which then decodes as before.
    moec_sequence_rewind(sequence, tokens + 1, &error);
    expect_error(error, "rewinding past the end is refused", "cannot rewind");
    moec_sequence_rewind(sequence, -1, &error);
    expect_error(error, "rewinding to -1 is refused", "cannot rewind");
    check(moec_sequence_rewind(sequence, tokens - 1, &error) == 1 && moec_sequence_length(sequence, NULL) == tokens - 1,
          "rewind by one token", error);
    check(run_rows(sequence, x, y2, tokens - 1, tokens, hidden, &error) &&
              memcmp(y + (tokens - 1) * hidden, y2 + (tokens - 1) * hidden, (size_t)hidden * sizeof(float)) == 0,
          "the last token decoded again gives the same row bit for bit", error);

    // The sequence holds its plan: freeing the plan's handle leaves it usable.
    moec_sequence second = moec_sequence_new(plan, tokens, &error);
    check(second != 0, "a second sequence of the plan", error);
    moec_free(plan, NULL);
    check(moec_sequence_rewind(sequence, 0, &error) == 1, "rewind to 0 after the plan's handle is freed", error);
    struct decoding a = {sequence, x, calloc(count, sizeof(float)), tokens, hidden, 0};
    struct decoding b = {second, x, calloc(count, sizeof(float)), tokens, hidden, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, decode, &a);
    pthread_create(&tb, NULL, decode, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    check(a.errors == 0 && b.errors == 0 && memcmp(a.y, y, count * sizeof(float)) == 0 && memcmp(b.y, y, count * sizeof(float)) == 0,
          "two sequences decoded at once on two threads equal the first decode bit for bit", NULL);
    free(a.y);
    free(b.y);

    check(moec_sequence_free(sequence, &error) == 1 && moec_sequence_free(second, &error) == 1, "moec_sequence_free", error);
    check(!run_rows(sequence, x, y2, 0, 1, hidden, &error), "a run of a freed sequence fails", NULL);
    expect_error(error, "... and says so", "was freed (moec_sequence_free)");
    moec_sequence_free(sequence, &error);
    expect_error(error, "a second free says so", "was freed");
    moec_sequence_length(0, &error);
    expect_error(error, "sequence 0", "not a sequence");
    moec_sequence_length(987654321, &error);
    expect_error(error, "a made-up sequence", "not a sequence this library made");
    free(y);
    free(y2);
    printf("%s\n", failures ? "FAILED" : "all checks held");
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    int sequences = argc > 1 && strcmp(argv[1], "--sequence") == 0;
    if (sequences) { argc--; argv++; }
    if (argc < 7) {
        fprintf(stderr, "usage: moec-capi-check [--sequence] GRAPH.moe MODEL_DIR X.f32 TOKENS HIDDEN Y.f32 [NAME=VALUE...]\n");
        return 2;
    }
    const char *graph = argv[1], *model = argv[2];
    int64_t tokens = atoll(argv[4]), hidden = atoll(argv[5]);
    const char *const *params = (const char *const *)(argv + 7);
    size_t param_count = (size_t)(argc - 7);
    size_t count = (size_t)(tokens * hidden);
    float *x = read_floats(argv[3], count);
    if (!x) { fprintf(stderr, "cannot read %s\n", argv[3]); return 2; }
    char *error = NULL;
    if (sequences) return check_sequences(graph, model, x, tokens, hidden, argv[6], params, param_count);

    check(strlen(moec_version()) > 0, "moec_version", moec_version());

    // A model that is not there, a graph that is not there, a param that is not NAME=VALUE.
    moec_plan bad = moec_compile(graph, "/no/such/model", params, param_count, NULL, &error);
    check(bad == 0, "compile with a missing model returns 0", NULL);
    expect_error(error, "compile with a missing model says so", "/no/such/model");
    bad = moec_compile("/no/such/graph.moe", model, NULL, 0, NULL, &error);
    expect_error(error, "compile with a missing graph says so", "/no/such/graph.moe");
    const char *not_assignment[] = {"layer"};
    bad = moec_compile(graph, model, not_assignment, 1, NULL, &error);
    expect_error(error, "a param without '=' is refused", "NAME=VALUE");
    bad = moec_compile(NULL, model, NULL, 0, NULL, &error);
    expect_error(error, "a NULL graph path is refused", "graph_path is NULL");
    // A graph with a mistake: the message is located and quotes the source line.
    char bad_graph[] = "/tmp/moec-capi-check-XXXXXX.moe";
    int fd = mkstemps(bad_graph, 4);
    const char *text = "model broken\ninput x: [tokens, 4]\nlet y = frobnicate(x)\noutput y\n";
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) { fprintf(stderr, "cannot write %s\n", bad_graph); return 2; }
    close(fd);
    bad = moec_compile(bad_graph, model, NULL, 0, NULL, &error);
    int located = error != NULL && strstr(error, ":3:9: error:") != NULL && strstr(error, "let y = frobnicate(x)") != NULL;
    check(bad == 0 && located, "a mistake in the graph is reported at its line and column, with the line", error);
    moec_string_free(error);
    unlink(bad_graph);
    moec_options wrong_size = {0};
    bad = moec_compile(graph, model, params, param_count, &wrong_size, &error);
    expect_error(error, "options without a size are refused", "sizeof(moec_options)");
    moec_options unknown_weights = {sizeof(moec_options), 0, 0, "int3"};
    bad = moec_compile(graph, model, params, param_count, &unknown_weights, &error);
    expect_error(error, "an unknown weight format is refused", "int3");
    // Errors without an error pointer are still errors, not crashes.
    check(moec_compile(graph, "/no/such/model", params, param_count, NULL, NULL) == 0, "a failing call with error = NULL returns 0", NULL);

    moec_options options = {sizeof(moec_options), 2, 1, NULL};
    moec_plan plan = moec_compile(graph, model, params, param_count, &options, &error);
    check(plan != 0 && error == NULL, "compile", error);
    if (!plan) return 1;

    check(moec_input_count(plan, NULL) == 1 && moec_output_count(plan, NULL) >= 1, "one input, outputs", NULL);
    check(moec_is_sequence(plan, &error) == 0 && error == NULL, "a MoE block's tokens are not a sequence", error);
    char name[64];
    int32_t length = moec_input_name(plan, 0, name, sizeof name, &error);
    check(length > 0 && (size_t)length == strlen(name), "input name", name);
    char small[2];
    length = moec_input_name(plan, 0, small, sizeof small, NULL);
    check(length == (int32_t)strlen(name) && small[1] == 0, "a short name buffer gets a truncated, terminated name", small);
    moec_input_name(plan, 5, name, sizeof name, &error);
    expect_error(error, "input index out of range", "out of range");
    int64_t shape[4];
    int32_t dtype = -1;
    int32_t rank = moec_output_shape(plan, 0, tokens, shape, 4, &dtype, &error);
    check(rank == 2 && shape[0] == tokens && shape[1] == hidden && dtype == MOEC_F32, "output shape at TOKENS", NULL);
    moec_output_shape(plan, 0, 0, shape, 4, &dtype, &error);
    expect_error(error, "zero tokens is refused", "at least 1");

    // Wrong shapes, types and pointers: errors, and the output buffer untouched.
    float *y = malloc(count * sizeof(float));
    for (size_t i = 0; i < count; i++) y[i] = -7;
    int64_t good[2] = {tokens, hidden}, narrow[2] = {tokens, hidden - 1}, other_tokens[2] = {tokens + 1, hidden};
    int64_t negative[2] = {-1, hidden};
    moec_tensor in = {x, good, 2, MOEC_F32}, out = {y, good, 2, MOEC_F32};
    moec_tensor in_narrow = {x, narrow, 2, MOEC_F32}, in_int = {x, good, 2, MOEC_I32};
    moec_tensor in_rank1 = {x, good, 1, MOEC_F32}, in_null = {NULL, good, 2, MOEC_F32};
    moec_tensor in_negative = {x, negative, 2, MOEC_F32}, in_bad_type = {x, good, 2, 9};
    moec_tensor out_tokens = {y, other_tokens, 2, MOEC_F32};
    check(!moec_run(plan, &in_narrow, 1, &out, 1, &error), "a narrow input fails", NULL);
    expect_error(error, "a narrow input is named", "dimension 2");
    moec_run(plan, &in_int, 1, &out, 1, &error);
    expect_error(error, "an integer input for a float one", "must hold floats");
    moec_run(plan, &in_rank1, 1, &out, 1, &error);
    expect_error(error, "a rank-1 input", "dimensions");
    moec_run(plan, &in_null, 1, &out, 1, &error);
    expect_error(error, "a NULL data pointer", "data is NULL");
    moec_run(plan, &in_negative, 1, &out, 1, &error);
    expect_error(error, "a negative dimension", "negative");
    moec_run(plan, &in_bad_type, 1, &out, 1, &error);
    expect_error(error, "an unknown dtype", "dtype 9");
    moec_run(plan, &in, 1, &out_tokens, 1, &error);
    expect_error(error, "an output sized for another token count", "must be");
    moec_run(plan, &in, 0, &out, 1, &error);
    expect_error(error, "no inputs", "got 0 tensors");
    moec_run(plan, NULL, 1, &out, 1, &error);
    expect_error(error, "inputs NULL", "inputs is NULL");
    int untouched = 1;
    for (size_t i = 0; i < count; i++) untouched &= y[i] == -7;
    check(untouched, "failed runs leave the output buffer untouched", NULL);

    check(moec_run(plan, &in, 1, &out, 1, &error) == 1, "run", error);
    FILE *f = fopen(argv[6], "wb");
    fwrite(y, sizeof(float), count, f);
    fclose(f);

    char *stats = moec_stats_json(plan, &error);
    check(stats != NULL && strstr(stats, "\"moec-load-statistics\"") != NULL, "routing statistics", error);
    moec_string_free(stats);
    check(moec_stats_reset(plan, &error) == 1, "statistics reset", error);

    // Concurrent runs: two plans, two threads each, every run equal to the serial one bit for bit.
    moec_options one_thread = {sizeof(moec_options), 1, 0, NULL};
    moec_plan second = moec_compile(graph, model, params, param_count, &one_thread, &error);
    check(second != 0, "a second plan", error);
    char *no_stats = moec_stats_json(second, &error);
    check(no_stats == NULL, "no statistics without record_routing", NULL);
    expect_error(error, "statistics need record_routing", "record_routing");
    struct concurrent_run runs[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        runs[i] = (struct concurrent_run){i < 2 ? plan : second, x, tokens, hidden, y, 25, 0, 0};
        pthread_create(&threads[i], NULL, run_repeatedly, &runs[i]);
    }
    int mismatches = 0, errors = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        mismatches += runs[i].mismatches;
        errors += runs[i].errors;
    }
    check(mismatches == 0 && errors == 0, "100 concurrent runs of two plans equal the serial run bit for bit", NULL);

    // Saved and loaded again, the plan gives the same output bit for bit.
    char plan_path[] = "/tmp/moec-capi-check-XXXXXX.plan.json";
    fd = mkstemps(plan_path, 10);
    close(fd);
    check(moec_save(second, plan_path, &error) == 1, "save", error);
    moec_plan loaded = moec_load(plan_path, &one_thread, &error);
    check(loaded != 0, "load the saved plan", error);
    float *y2 = malloc(count * sizeof(float));
    moec_tensor out2 = {y2, good, 2, MOEC_F32};
    check(moec_run(loaded, &in, 1, &out2, 1, &error) == 1 && memcmp(y, y2, count * sizeof(float)) == 0,
          "the loaded plan's output equals the compiled plan's bit for bit", error);
    moec_free(loaded, NULL);
    free(y2);
    bad = moec_load(plan_path, &unknown_weights, &error);
    expect_error(error, "a weight format for a saved plan is refused", "moec_options.weights applies to moec_compile");
    unlink(plan_path);
    bad = moec_load("/no/such/plan.json", NULL, &error);
    expect_error(error, "a missing plan file", "/no/such/plan.json");

    // A freed plan: every call on it is an error, a second free too.
    check(moec_free(second, &error) == 1, "free", error);
    check(!moec_run(second, &in, 1, &out, 1, &error), "run after free fails", NULL);
    expect_error(error, "run after free says so", "was freed");
    moec_free(second, &error);
    expect_error(error, "a second free says so", "was freed");
    moec_input_count(0, &error);
    expect_error(error, "handle 0", "not a plan");
    moec_input_count(123456789, &error);
    expect_error(error, "a made-up handle", "not a plan this library made");
    check(moec_is_sequence(123456789, &error) == -1, "moec_is_sequence of a made-up handle fails", NULL);
    expect_error(error, "... and says so", "not a plan this library made");
    moec_free(plan, NULL);
    free(x);
    free(y);
    printf("%s\n", failures ? "FAILED" : "all checks held");
    return failures ? 1 : 0;
}
