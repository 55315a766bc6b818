/*
 * moec.h: the C API of moec, a compiler for Mixture-of-Experts model graphs.
 *
 * Link with libMoEC (`swift build -c release` builds .build/release/libMoEC.so, or .dylib on
 * macOS). A plan is a `.moe` graph compiled against a checkpoint and loaded with its weights;
 * runs read and write caller-owned, C-contiguous buffers.
 *
 * Errors. Every function that can fail returns 0 (or a 0 handle) on failure and, when `error` is
 * not NULL, stores a message in `*error` (for `.moe` sources `file:line:col: error: …`; for weight
 * files the tensor and the byte offset) that the caller frees with `moec_string_free`. On success
 * `*error` is set to NULL. No function exits the process or crashes on bad input: wrong shapes,
 * a freed or unknown handle, a missing model or a NULL pointer are all reported as errors.
 *
 * Threads. Every function may be called from any thread. Runs of different plans, and runs of
 * the same plan, may go on at the same time; each run uses the plan's `threads` worker threads.
 * A plan freed while a run of it is going on is released when that run ends.
 */
#ifndef MOEC_H
#define MOEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this API: bumped when a declaration below changes. */
#define MOEC_API_VERSION 1

/* A compiled, loaded plan: an opaque handle. 0 is never a plan; a freed handle is never reused. */
typedef uint64_t moec_plan;

/* Element types of tensors. */
enum { MOEC_F32 = 0, MOEC_I32 = 1 };

/* A tensor the caller owns: `data` holds the product of `shape` elements of `dtype`, C order. */
typedef struct moec_tensor {
    void *data;
    const int64_t *shape;
    int32_t rank;
    int32_t dtype;
} moec_tensor;

/* How a plan is compiled and loaded. Zero-initialise, then set `size` to sizeof(moec_options):
 * fields added in later versions are then read as zero. A NULL options pointer means all zero. */
typedef struct moec_options {
    uint32_t size;
    /* Worker threads of each run; 0: one per core. */
    int32_t threads;
    /* Nonzero: every run records expert loads and router statistics (`moec_stats_json`). */
    int32_t record_routing;
    /* How feed-forward matrices (experts, shared experts) are stored, as `moec compile --weights`: "f32", "bf16", "f16", "int8",
     * "int4[:32|64|128]", "int4z[:32|64|128]". NULL or "": as the checkpoint stores them
     * (GGUF types and GPTQ/AWQ int4 kept, safetensors f32/bf16/f16 read as f32). */
    const char *weights;
} moec_options;

/* moec's version, e.g. "0.9.0": a static string, not to be freed. */
const char *moec_version(void);

/* Compiles the `.moe` file `graph_path` against the checkpoint `model_path` (a folder with
 * config.json and safetensors, or a .gguf file) and loads its weights. `params` are
 * `param_count` strings "name=value" that set the graph's params (as `moec compile --set`),
 * e.g. "layer=3". Returns the plan, or 0 with `*error` set. */
moec_plan moec_compile(const char *graph_path, const char *model_path, const char *const *params,
                       size_t param_count, const moec_options *options, char **error);

/* Loads a plan file written by `moec compile` (or `moec_save`); its weight files must be
 * unchanged. `options->weights` must be NULL or "" (the plan says how weights are stored). */
moec_plan moec_load(const char *plan_path, const moec_options *options, char **error);

/* Writes the plan as a plan file (JSON, written atomically), for `moec run` or `moec_load`. */
int moec_save(moec_plan plan, const char *path, char **error);

/* How many inputs / outputs the graph has, or -1 with `*error` set. */
int32_t moec_input_count(moec_plan plan, char **error);
int32_t moec_output_count(moec_plan plan, char **error);

/* 1 when the graph reads its tokens as one sequence in order (rotary embeddings, attention: a
 * whole decoder layer), so that the rows of a run must be one sequence, positions 0, 1, …;
 * 0 when each token's result depends on the token alone or on the batch as a whole (MoE
 * routing, capacity); -1 with `*error` set. */
int32_t moec_is_sequence(moec_plan plan, char **error);

/* The name of input (output) `index`: writes at most `capacity` bytes including the final NUL
 * into `name` (which may be NULL when `capacity` is 0) and returns the name's full length in
 * bytes without the NUL, or -1 with `*error` set. */
int32_t moec_input_name(moec_plan plan, int32_t index, char *name, size_t capacity, char **error);
int32_t moec_output_name(moec_plan plan, int32_t index, char *name, size_t capacity, char **error);

/* The shape of input (output) `index` in a run of `tokens` tokens: writes at most `capacity`
 * dimensions into `shape` and the element type into `*dtype` (when not NULL), and returns the
 * rank, or -1 with `*error` set. */
int32_t moec_input_shape(moec_plan plan, int32_t index, int64_t tokens, int64_t *shape, size_t capacity,
                         int32_t *dtype, char **error);
int32_t moec_output_shape(moec_plan plan, int32_t index, int64_t tokens, int64_t *shape, size_t capacity,
                          int32_t *dtype, char **error);

/* Runs the plan: `inputs` are the graph's inputs in order (`moec_input_name`), `outputs` buffers
 * for its outputs in order, with the shapes `moec_output_shape` gives for the token count the
 * inputs imply. Shapes and types are checked before anything runs. Returns 1, or 0 with `*error`
 * set (and the output buffers untouched). */
int moec_run(moec_plan plan, const moec_tensor *inputs, size_t input_count, const moec_tensor *outputs,
             size_t output_count, char **error);

/* The routing statistics of every run since the plan was loaded or last reset (the plan must be
 * loaded with `record_routing`): the JSON `moec profile` writes, for `moec place --load`.
 * Returns a string to free with `moec_string_free`, or NULL with `*error` set. */
char *moec_stats_json(moec_plan plan, char **error);

/* Forgets the routing statistics recorded so far. Returns 1, or 0 with `*error` set. */
int moec_stats_reset(moec_plan plan, char **error);

/* Releases the plan and its weights. Returns 1, or 0 with `*error` set (an unknown or already
 * freed handle). */
int moec_free(moec_plan plan, char **error);

/* A sequence: runs of a plan that continue one another, for decoding a token at a time with a
 * decoder layer's graph (rotary embeddings, attention). A run on a sequence reads its rows as the
 * sequence's next positions: its attentions see the keys and values of every earlier token of
 * the sequence (its KV cache) as well as its own, and afterwards the sequence holds its tokens.
 * A prompt run at once or a token at a time gives the same outputs. Like plans, sequences are
 * handles: numbers, never pointers; 0 is never one. */
typedef uint64_t moec_sequence;

/* A sequence of at most `capacity` tokens for `plan`'s runs; its keys, values and rotary tables
 * are allocated now (a run allocates nothing). The sequence holds the plan: freeing the plan's
 * handle first leaves the sequence usable. Returns 0 with `*error` set when the capacity is below
 * 1 or needs more memory than the machine has. */
moec_sequence moec_sequence_new(moec_plan plan, int64_t capacity, char **error);

/* Runs the sequence's plan as `moec_run` does, on its next tokens (as many as the inputs' rows).
 * One run at a time per sequence (another at once is an error); different sequences of one
 * plan may run at once. A run that does not fit in the capacity left is refused before it runs,
 * and the sequence is unchanged. Returns 1, or 0 with `*error` set. */
int moec_sequence_run(moec_sequence sequence, const moec_tensor *inputs, size_t input_count,
                      const moec_tensor *outputs, size_t output_count, char **error);

/* The number of tokens the sequence holds (the position of its next run's first token), or -1
 * with `*error` set. */
int64_t moec_sequence_length(moec_sequence sequence, char **error);

/* Forgets every token from position `length` on (0: all of them): to start the sequence anew,
 * or to take back tokens a draft proposed. `length` must be between 0 and the length. Returns 1,
 * or 0 with `*error` set. */
int moec_sequence_rewind(moec_sequence sequence, int64_t length, char **error);

/* The most tokens the sequence can hold now, or -1 with `*error` set. */
int64_t moec_sequence_capacity(moec_sequence sequence, char **error);

/* Makes room for `capacity` tokens, keeping the tokens held (a capacity not above the present one
 * changes nothing): the one call that allocates once the sequence is made. Not while the
 * sequence runs. Returns 1, or 0 with `*error` set and the sequence unchanged. */
int moec_sequence_reserve(moec_sequence sequence, int64_t capacity, char **error);

/* Releases the sequence. Returns 1, or 0 with `*error` set (an unknown or already freed handle). */
int moec_sequence_free(moec_sequence sequence, char **error);

/* Frees a string returned by this API (an error message or statistics). NULL is allowed. */
void moec_string_free(char *string);

#ifdef __cplusplus
}
#endif

#endif /* MOEC_H */
